"""The Blender "NeRF synthetic" format: transforms_{train,val,test}.json plus RGBA PNGs.

Poses are already OpenGL camera-to-world; the focal length follows from `camera_angle_x`;
near/far are the 2 and 6 of the NeRF paper; images are composited onto white by default.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import composite_stack_, load_rgba_stack, read_image
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import check_poses, to_homogeneous
from nerf.datasets.scene import Cameras, Scene, select_views

SPLITS = ("train", "val", "test")
NEAR, FAR = 2.0, 6.0
BBOX = ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))


def is_blender(root: Path) -> bool:
    return (root / "transforms_train.json").is_file()


def read_json(path: Path) -> dict:
    """A JSON file as a dict, or a one-line error naming the file and the problem."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: malformed JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise DatasetError(f"{path}: not a text file") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a JSON object at the top level")
    return data


def load_blender(root: Path, split: str, opts: DataOptions) -> Scene:
    """One split of a Blender scene folder, downscaled by `opts.downscale`, capped at `opts.max_images`."""
    path = root / f"transforms_{split}.json"
    meta = read_json(path)
    angle = meta.get("camera_angle_x")
    if not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
        raise DatasetError(f"{path}: 'camera_angle_x' must be a number in (0, pi), got {angle!r}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: 'frames' must be a non-empty list")
    keep, in_split = select_views(len(frames), opts, path)
    frames = [frames[i] for i in keep]
    files, poses = [], []
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DatasetError(f"{path}: frame {keep[k]} needs 'file_path' and 'transform_matrix'")
        fp = str(fr["file_path"])
        p = (root / fp) if Path(fp).suffix else (root / (fp + ".png"))
        files.append(p)
        m = np.asarray(fr["transform_matrix"], dtype=object)
        if m.shape not in ((4, 4), (3, 4)):
            raise DatasetError(f"{path}: frame {keep[k]} 'transform_matrix' must be 4x4, got shape {m.shape}")
        try:
            poses.append(m.astype(np.float64))
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: frame {keep[k]} 'transform_matrix' has non-numeric entries") from None
    c2w = to_homogeneous(np.stack([p[:3] for p in poses]))
    check_poses(c2w, str(path))

    rgb, alpha = load_rgba_stack(files, opts.downscale)
    bg = torch.ones(3) if opts.background == "white" else torch.zeros(3)
    if alpha is not None:
        rgb = composite_stack_(rgb, alpha, bg)
    n, h, w = rgb.shape[:3]
    # Intrinsics from the full-size image: a downscale that does not divide it crops the right and
    # bottom edges, which moves neither the focal length nor the principal point (in full pixels);
    # a downscaled pixel i spans full pixels [i k, (i + 1) k), so both scale by 1 / k.
    k = opts.downscale
    full_h, full_w = (h, w) if k == 1 else read_image(files[0]).shape[:2]
    focal = 0.5 * full_w / math.tan(0.5 * angle) / k
    cams = Cameras(
        c2w=torch.from_numpy(c2w), fx=torch.full((n,), focal), fy=torch.full((n,), focal),
        cx=torch.full((n,), full_w / (2.0 * k)), cy=torch.full((n,), full_h / (2.0 * k)), width=w, height=h,
    )
    return Scene(
        name=root.name, split=split, images=rgb, cameras=cams, near=NEAR, far=FAR,
        bbox=torch.tensor(BBOX), background=bg, alpha=alpha,
        image_names=[f.stem for f in files], metadata={"format": "blender", "camera_angle_x": angle,
                                                      "views_in_split": in_split},
    )
