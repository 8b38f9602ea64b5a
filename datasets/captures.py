"""What the real-capture loaders (transforms.json, COLMAP) share: one posed frame per photo, and
the assembly of a `Scene` split from a list of frames.

Every frame's pose is an OpenGL camera-to-world matrix in the file's world. The assembly
- centres and scales all frames together from the camera positions (`normalize_cameras`: mean
  position to the origin, furthest camera on the unit sphere), so scenes of any capture scale
  arrive at the scale the scene contraction expects and train and test share one frame;
- takes the file's split when it names one, else holds out every data.holdout_every-th frame
  (frames in file-name order) for test and val;
- reads the images (area-downscaled by data.downscale) and scales the intrinsics to them;
- sets near/far from the scene points' depths when the format has points (COLMAP), else from the
  box holding the content; data.near / data.far override both.
Photos without alpha render over black; RGBA images are composited onto data.background.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import composite_premultiplied, downscale_area, load_rgba_stack, read_image
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import box_bounds, check_poses, holdout_indices, normalize_cameras
from nerf.datasets.scene import Cameras, Scene, evenly_spaced

UNIT_BOX = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


@dataclass
class Frame:
    """One photo: its file, OpenGL camera-to-world pose (4, 4) in the file's world, pinhole
    intrinsics in pixels of a width x height image, optional OpenCV distortion (k1, k2, p1, p2)
    and optional mask file (white = use, black = ignore)."""

    path: Path
    c2w: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: np.ndarray | None = None
    mask: Path | None = None


def select_split(frames: list[Frame], split: str, opts: DataOptions, named: dict[str, list[int]] | None,
                 source: Path) -> list[int]:
    """Indices of `split`: the file's own split (`named`, split -> indices) or the hold-out rule."""
    if named is not None:
        if split not in named:
            raise DatasetError(f"{source}: names no {split!r} split")
        idx = named[split]
    else:
        idx = holdout_indices(len(frames), split, opts.holdout_every)
    if not idx:
        raise DatasetError(f"{source}: split {split!r} is empty ({len(frames)} frames)")
    return [idx[i] for i in evenly_spaced(len(idx), opts.max_images)]


def build_scene(root: Path, fmt: str, frames: list[Frame], split: str, opts: DataOptions, source: Path,
                named: dict[str, list[int]] | None = None, bbox: np.ndarray | None = None,
                depth_range: tuple[float, float] | None = None, metadata: dict | None = None,
                downscale: int | None = None) -> Scene:
    """A `Scene` split from all frames of a capture (see the module docstring).

    bbox: (2, 3) box of the content in the file's world (None: the unit cube after normalising);
    depth_range: (near, far) distances of the content in the file's units (None: from the box);
    downscale: the area-averaging factor for the image files (default data.downscale; 1 when the
    loader already picked a folder of smaller images).
    """
    all_c2w = np.stack([f.c2w for f in frames]).astype(np.float64)
    check_poses(all_c2w, str(source))
    all_c2w, centre, scale = normalize_cameras(all_c2w)
    box = UNIT_BOX if bbox is None else (np.asarray(bbox, dtype=np.float64) - centre) * scale
    box = np.stack([box.min(0), box.max(0)])

    idx = select_split(frames, split, opts, named, source)
    sel = [frames[i] for i in idx]
    w0, h0 = sel[0].width, sel[0].height
    for f in sel:
        if (f.width, f.height) != (w0, h0):
            raise DatasetError(f"{source}: frame {f.path.name} is {f.width}x{f.height} but {sel[0].path.name} is "
                               f"{w0}x{h0}; one split must share an image size")
    k = opts.downscale if downscale is None else downscale
    rgb, alpha = load_rgba_stack([f.path for f in sel], k)
    n, h, w = rgb.shape[:3]
    # the files may be stored smaller than the intrinsics say (e.g. images_2 folders): scale by the
    # ratio, ignoring the few pixels area-downscaling crops off
    sx = 1.0 / k if abs(w * k - w0) < k else w / w0
    sy = 1.0 / k if abs(h * k - h0) < k else h / h0
    if alpha is not None:
        background = torch.ones(3) if opts.background == "white" else torch.zeros(3)
        rgb = composite_premultiplied(torch.cat([rgb, alpha[..., None]], -1), background)
    else:
        background = torch.zeros(3)

    mask = None
    if any(f.mask is not None for f in sel):
        mask = torch.ones(n, h, w)
        for i, f in enumerate(sel):
            if f.mask is None:
                continue
            m = torch.from_numpy(read_image(f.mask))[..., :1]
            m = downscale_area(m, k)[..., 0]
            if m.shape != (h, w):
                raise DatasetError(f"{f.mask}: mask is {m.shape[1]}x{m.shape[0]} after downscaling, image is {w}x{h}")
            mask[i] = m

    col = lambda name, s: torch.tensor([getattr(f, name) * s for f in sel], dtype=torch.float32)  # noqa: E731
    dist = None
    if any(f.distortion is not None for f in sel):
        dist = torch.tensor(np.stack([f.distortion if f.distortion is not None else np.zeros(4) for f in sel]),
                            dtype=torch.float32)
    cams = Cameras(c2w=torch.from_numpy(all_c2w[idx].astype(np.float32)), fx=col("fx", sx), fy=col("fy", sy),
                   cx=col("cx", sx), cy=col("cy", sy), width=w, height=h, distortion=dist)

    if depth_range is not None:
        near, far = depth_range[0] * scale, depth_range[1] * scale
    else:
        near, far = box_bounds(all_c2w, box)
    near, far = opts.near or near, opts.far or far
    if not near < far:
        raise DatasetError(f"{source}: ray bounds near {near:g} >= far {far:g}; set data.near and data.far")
    meta = {"format": fmt, "n_images": len(frames), "indices": idx, "centre": centre.tolist(), "scale": scale,
            "render_path": "orbit"}
    meta.update(metadata or {})
    return Scene(
        name=root.name, split=split, images=rgb, cameras=cams, near=float(near), far=float(far),
        bbox=torch.from_numpy(box.astype(np.float32)), background=background, alpha=alpha,
        image_names=[f.path.stem for f in sel], mask=mask, metadata=meta,
    )
