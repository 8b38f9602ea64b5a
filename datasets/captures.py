"""What the real-capture loaders (transforms.json, COLMAP) share: one posed frame per photo, and
the assembly of a `Scene` split from a list of frames.

Every frame's pose is an OpenGL camera-to-world matrix in the file's world. The assembly
- centres and scales all frames together from the camera positions (`normalize_cameras`: mean
  position to the origin, furthest camera on the unit sphere), so scenes of any capture scale
  arrive at the scale the scene contraction expects and train and test share one frame;
- takes the file's split when it names one, else holds out every data.holdout_every-th frame
  (frames in file-name order) for test and val;
- reads the images (area-downscaled by data.downscale, raised where data.max_side caps the longer
  side: `capped_downscale`; or as the loader found them in an images_N folder) and scales each
  frame's intrinsics to them; a split must share one image size (the
  error names two files that differ);
- takes the content box from the loader (a box in the file, sparse points) or else from where the
  training cameras' view frusta meet (`poses.frusta_box`), recorded as metadata['box_source'];
- keeps the keypoints where each frame sees the scene's points, when the loader has them
  (`Scene.sparse_depth`: the distance along the ray through each, for depth supervision);
- sets near/far from the scene points' depths when the format has points (COLMAP, a transforms.json
  with a PLY), else from the
  box holding the content; data.near / data.far override both.
Photos without alpha render over black; RGBA images are composited onto data.background.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import composite_stack_, downscale_area, load_rgba_stack, read_image
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import box_bounds, check_poses, frusta_box, holdout_indices, normalize_cameras
from nerf.datasets.scene import Cameras, Scene, select_views
from nerf.render.distortion import LENS_WIDTH


@dataclass
class Frame:
    """One photo: its file, OpenGL camera-to-world pose (4, 4) in the file's world, pinhole
    intrinsics in pixels of a width x height image (the size the intrinsics describe; the file may
    be stored smaller, e.g. in an images_N folder, and the intrinsics are scaled to it), an optional
    lens row (k1, k2, p1, p2) or (k1, k2, p1, p2, k3, k4, fisheye) (see `render.distortion`; build
    one with `lens_row`), an optional mask file: white = use, black = ignore, or the other way
    round when `mask_ignores` (instant-ngp's dynamic masks: any non-black pixel is ignored), and
    optional keypoints (k, 5): x, y in pixels of the width x height image and the X, Y, Z of the
    scene point seen there, in the file's world (a COLMAP model's tracks), for sparse depth."""

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
    mask_ignores: bool = False
    keypoints: np.ndarray | None = None


def capped_downscale(opts: DataOptions, width: int | None, height: int | None) -> int:
    """The downscale to read a capture of images `width` x `height` at: data.downscale, or the
    smallest larger integer that brings the longer side to at most data.max_side pixels (the size
    unknown or max_side 0: data.downscale)."""
    k = opts.downscale
    if opts.max_side <= 0 or not width or not height:
        return k
    return max(k, -(-max(int(width), int(height)) // opts.max_side))


def lens_row(k1: float = 0.0, k2: float = 0.0, p1: float = 0.0, p2: float = 0.0, k3: float = 0.0, k4: float = 0.0,
             fisheye: bool = False) -> np.ndarray | None:
    """The full lens row of `render.distortion` (7,), or None for an ideal pinhole."""
    row = np.array([k1, k2, p1, p2, k3, k4, 1.0 if fisheye else 0.0], dtype=np.float64)
    return row if np.any(row != 0) else None


def split_indices(n: int, split: str, opts: DataOptions, named: dict[str, list[int]] | None,
                  source: Path) -> list[int]:
    """All indices of `split`: the file's own split (`named`, split -> indices) or the hold-out rule."""
    if named is not None:
        if split not in named:
            raise DatasetError(f"{source}: names no {split!r} split")
        idx = named[split]
    else:
        idx = holdout_indices(n, split, opts.holdout_every)
    if not idx:
        raise DatasetError(f"{source}: split {split!r} is empty ({n} frames)")
    return idx


def select_split(frames: list[Frame], split: str, opts: DataOptions, named: dict[str, list[int]] | None,
                 source: Path) -> tuple[list[int], int]:
    """Indices of `split` (see `split_indices`) that `select_views` keeps, and the views in the split."""
    idx = split_indices(len(frames), split, opts, named, source)
    keep, in_split = select_views(len(idx), opts, source)
    return [idx[i] for i in keep], in_split


def _scale_to(loaded: int, declared: int) -> float:
    """The factor taking intrinsics of an image `declared` pixels wide to one stored `loaded` wide:
    exactly 1 / m when the file is the declared size divided by an integer m (up to the pixels a
    downscale crops), else the plain ratio."""
    m = max(1, round(declared / loaded))
    return 1.0 / m if abs(loaded * m - declared) < m else loaded / declared


def _read_mask(f: Frame, h: int, w: int) -> torch.Tensor:
    """Frame f's mask (h, w) in [0, 1] (1 = use), area-downscaled by the integer factor its file's
    size is of the image's."""
    m = torch.from_numpy(read_image(f.mask))
    if f.mask_ignores:
        m = 1.0 - (m[..., :3].amax(-1, keepdim=True) > 0).float()
    else:
        m = m[..., :1]
    mh, mw = m.shape[:2]
    k = max(1, round(mw / w))
    if abs(mw - w * k) >= k or abs(mh - h * k) >= k:
        raise DatasetError(f"{f.mask}: mask is {mw}x{mh}, image {f.path.name} is loaded at {w}x{h}")
    return downscale_area(m, k)[:h, :w, 0]


def build_scene(root: Path, fmt: str, frames: list[Frame], split: str, opts: DataOptions, source: Path,
                named: dict[str, list[int]] | None = None, bbox: np.ndarray | None = None,
                depth_range: tuple[float, float] | None = None, metadata: dict | None = None,
                downscale: int | None = None) -> Scene:
    """A `Scene` split from all frames of a capture (see the module docstring).

    bbox: (2, 3) box of the content in the file's world (None: where the training cameras' view
    frusta meet, `poses.frusta_box`); depth_range: (near, far) distances of the content in the
    file's units (None: from the box); downscale: the area-averaging factor for the image files
    (default data.downscale; 1 when the loader already picked a folder of smaller images).
    """
    all_c2w = np.stack([f.c2w for f in frames]).astype(np.float64)
    check_poses(all_c2w, str(source))
    all_c2w, centre, scale = normalize_cameras(all_c2w)
    box_source = None
    if bbox is None:
        tr = list(range(len(frames))) if named is not None and "train" not in named else \
            split_indices(len(frames), "train", opts, named, source)
        box = frusta_box(all_c2w[tr], *(np.array([getattr(frames[i], a) for i in tr], dtype=np.float64)
                                         for a in ("fx", "fy", "cx", "cy", "width", "height")))
        box_source = "frusta"
    else:
        box = (np.asarray(bbox, dtype=np.float64) - centre) * scale
    box = np.stack([box.min(0), box.max(0)])

    idx, in_split = select_split(frames, split, opts, named, source)
    sel = [frames[i] for i in idx]
    k = opts.downscale if downscale is None else downscale
    rgb, alpha = load_rgba_stack([f.path for f in sel], k)
    n, h, w = rgb.shape[:3]
    # the files may be stored smaller than the intrinsics say (images_N folders, data.downscale):
    # scale each frame's intrinsics by its own ratio, ignoring the few pixels a downscale crops off
    sx = np.array([_scale_to(w, f.width) for f in sel])
    sy = np.array([_scale_to(h, f.height) for f in sel])
    if alpha is not None:
        background = torch.ones(3) if opts.background == "white" else torch.zeros(3)
        rgb = composite_stack_(rgb, alpha, background)
    else:
        background = torch.zeros(3)

    mask = None
    if any(f.mask is not None for f in sel):
        mask = torch.ones(n, h, w)
        for i, f in enumerate(sel):
            if f.mask is not None:
                mask[i] = _read_mask(f, h, w)

    col = lambda name, s: torch.tensor([getattr(f, name) * si for f, si in zip(sel, s)], dtype=torch.float32)  # noqa: E731
    dist = None
    if any(f.distortion is not None for f in sel):
        rows = [np.zeros(LENS_WIDTH) if f.distortion is None else
                np.pad(np.asarray(f.distortion, dtype=np.float64), (0, LENS_WIDTH - len(f.distortion))) for f in sel]
        rows = np.stack(rows)
        if not np.any(rows[:, 4:]):  # plain k1 k2 p1 p2 everywhere: the short form
            rows = rows[:, :4]
        dist = torch.tensor(rows, dtype=torch.float32)
    cams = Cameras(c2w=torch.from_numpy(all_c2w[idx].astype(np.float32)), fx=col("fx", sx), fy=col("fy", sy),
                   cx=col("cx", sx), cy=col("cy", sy), width=w, height=h, distortion=dist)

    sparse = _sparse_depth(sel, sx, sy, w, h, scale, mask)
    if depth_range is not None:
        near, far = depth_range[0] * scale, depth_range[1] * scale
    else:
        near, far = box_bounds(all_c2w, box)
    near, far = opts.near or near, opts.far or far
    if not near < far:
        raise DatasetError(f"{source}: ray bounds near {near:g} >= far {far:g}; set data.near and data.far")
    to_world = np.eye(4)  # the loaded frame back to the file's world and units (x_file = to_world @ x)
    to_world[:3, :3] /= scale
    to_world[:3, 3] = centre
    meta = {"format": fmt, "n_images": len(frames), "indices": idx, "views_in_split": in_split,
            "centre": centre.tolist(), "scale": scale,
            "render_path": "orbit", "to_world": to_world.tolist()}
    if box_source:
        meta["box_source"] = box_source
    meta.update(metadata or {})
    return Scene(
        name=root.name, split=split, images=rgb, cameras=cams, near=float(near), far=float(far),
        bbox=torch.from_numpy(box.astype(np.float32)), background=background, alpha=alpha,
        image_names=[f.path.stem for f in sel], mask=mask, metadata=meta, sparse_depth=sparse,
    )


def _sparse_depth(sel: list[Frame], sx: np.ndarray, sy: np.ndarray, w: int, h: int, scale: float,
                  mask: torch.Tensor | None = None) -> torch.Tensor | None:
    """`Scene.sparse_depth` of the frames `sel`: their keypoints at the loaded size (x * sx, y * sy,
    inside the w x h image, on a pixel the frame's mask keeps) with the distance from the camera to
    the point in normalised units."""
    rows = []
    for i, f in enumerate(sel):
        if f.keypoints is None:
            continue
        k = np.asarray(f.keypoints, dtype=np.float64)
        x, y = k[:, 0] * sx[i], k[:, 1] * sy[i]
        dist = np.linalg.norm(k[:, 2:5] - f.c2w[:3, 3], axis=1) * scale
        ok = (x >= 0) & (x < w) & (y >= 0) & (y < h) & (dist > 0)
        if mask is not None:  # a keypoint on a pixel the mask ignores (a moving person) is no guide
            ok[ok] = mask[i].numpy()[y[ok].astype(np.int64), x[ok].astype(np.int64)] > 0.5
        rows.append(np.stack([np.full(int(ok.sum()), i), x[ok], y[ok], dist[ok]], axis=1))
    if not rows:
        return None
    return torch.from_numpy(np.concatenate(rows).astype(np.float32))
