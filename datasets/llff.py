"""LLFF captures (Mildenhall et al. 2019, used by the NeRF paper): poses_bounds.npy plus images.

poses_bounds.npy holds one row of 17 numbers per image, in the order of the sorted image file
names: a 3x5 matrix flattened row-major (a 3x4 camera-to-world pose whose rotation columns are
[down, right, back], then a column [height, width, focal] at full resolution) and the near and
far depth bounds of the scene points that image sees.

Loading follows the paper's conventions:
1. the images come from images_K (K = data.downscale; `images` for K = 1) and the focal length
   is scaled by the ratio of their width to the full width;
2. rotations become [right, up, back] (OpenGL);
3. the scene is scaled so that the nearest bound sits at 1 / 0.75 (bd_factor 0.75), which puts
   all content beyond the NDC near plane z = -1;
4. the poses are recentred on their average camera (`render.paths.average_pose`), so the
   cameras look down -z on average (not with spherify, which sets its own frame);
5. forward-facing scenes (the default) are rendered in NDC: rays run from near 0 to far 1 in
   NDC depth; data.spherify instead centres inward-facing 360 captures on the point the cameras
   look at, scales them to mean radius 1 and uses world-space bounds;
6. every data.holdout_every-th image (0, 8, 16, ... by default) is the test and val split.
Photos have no alpha: the scene's background is black and nothing is composited.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import load_rgba_stack
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import check_poses, frustum_bbox, holdout_indices, is_forward_facing, to_homogeneous
from nerf.datasets.scene import Cameras, Scene, select_views
from nerf.render.paths import average_pose

BD_FACTOR = 0.75
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_llff(root: Path) -> bool:
    return (root / "poses_bounds.npy").is_file()


def llff_forward_facing(root: Path) -> bool:
    """Whether the folder's poses_bounds.npy describes a forward-facing capture (every camera within
    30 degrees of the mean view direction; LLFF's own scenes stay within about 10); False when the
    file does not read."""
    try:
        poses, _, _ = read_poses_bounds(root / "poses_bounds.npy")
    except DatasetError:
        return False
    return is_forward_facing(to_homogeneous(llff_to_opengl(poses)))


def image_folder(root: Path, downscale: int) -> Path:
    """images_K for K = downscale (images for 1), or an error listing the image folders present."""
    name = "images" if downscale == 1 else f"images_{downscale}"
    folder = root / name
    if folder.is_dir():
        return folder
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("images"))
    have = ", ".join(present) if present else "none"
    raise DatasetError(f"{folder}: image folder for data.downscale={downscale} not found "
                       f"(image folders present: {have}); pick data.downscale to match one")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def read_poses_bounds(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """poses (n, 3, 4) in LLFF's [down, right, back] order, hwf (n, 3), bounds (n, 2)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] < 1:
        raise DatasetError(f"{path}: expected an (n_images, 17) array, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"{path}: row {int(np.argwhere(~np.isfinite(arr))[0, 0])} has non-finite values")
    mats = arr[:, :15].reshape(-1, 3, 5)
    bounds = arr[:, 15:17]
    if np.any(bounds <= 0) or np.any(bounds[:, 0] >= bounds[:, 1]):
        bad = int(np.argmax((bounds <= 0).any(1) | (bounds[:, 0] >= bounds[:, 1])))
        raise DatasetError(f"{path}: row {bad} has bounds {bounds[bad].tolist()}; need 0 < near < far")
    return mats[:, :, :4], mats[:, :, 4], bounds


def llff_to_opengl(poses: np.ndarray) -> np.ndarray:
    """(n, 3, 4) poses with rotation columns [down, right, back] -> [right, up, back]."""
    return np.concatenate([poses[:, :, 1:2], -poses[:, :, 0:1], poses[:, :, 2:4]], axis=2)


def recentre(c2w: np.ndarray) -> np.ndarray:
    """(n, 4, 4) poses expressed in the frame of their average camera."""
    avg = average_pose(torch.from_numpy(c2w)).numpy()
    return np.linalg.inv(avg) @ c2w


def spherify(c2w: np.ndarray, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Poses (n, 4, 4) of an inward-facing capture re-expressed around the point nearest to all
    optical axes (the new origin), with the mean camera up as world +z, scaled so the cameras'
    RMS distance from the origin is 1; bounds scaled alike."""
    frame, scale = spherify_frame(c2w)
    out = np.linalg.inv(frame) @ c2w
    out[:, :3, 3] *= scale
    return out, bounds * scale


def spherify_frame(c2w: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame (4, 4) and scale `spherify` moves poses (n, 4, 4) into: x_new = scale * frame^-1 x."""
    origins = c2w[:, :3, 3]
    fwd = -c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=-1, keepdims=True)
    proj = np.eye(3) - fwd[:, :, None] * fwd[:, None, :]
    a, b = proj.sum(0), (proj @ origins[:, :, None]).sum(0)[:, 0]
    if np.linalg.matrix_rank(a) < 3:
        raise DatasetError("data.spherify: the cameras' optical axes are parallel; is this a forward-facing scene?")
    centre = np.linalg.solve(a, b)
    up = c2w[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    helper = np.array([1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, up)
    x /= np.linalg.norm(x)
    y = np.cross(up, x)
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = x, y, up, centre
    out = np.linalg.inv(frame) @ c2w
    return frame, float(1.0 / np.sqrt(np.mean(np.sum(out[:, :3, 3] ** 2, -1))))


def load_llff(root: Path, split: str, opts: DataOptions) -> Scene:
    """One split of an LLFF scene folder (see the module docstring)."""
    pb_path = root / "poses_bounds.npy"
    poses, hwf, bounds = read_poses_bounds(pb_path)
    folder = image_folder(root, opts.downscale)
    files = list_images(folder)
    if len(files) != len(poses):
        raise DatasetError(f"{folder}: holds {len(files)} images but {pb_path.name} has {len(poses)} poses")
    n_total = len(poses)

    c2w = to_homogeneous(llff_to_opengl(poses)).astype(np.float64)
    scale = 1.0 / (bounds.min() * BD_FACTOR)
    c2w[:, :3, 3] *= scale
    bounds = bounds * scale
    spherified = bool(opts.spherify)
    # to_world: the loaded frame back to the file's world and units (x_file = to_world @ x), for exports
    if spherified:  # its own frame: the average camera of a ring of cameras is ill-defined
        frame, radius_scale = spherify_frame(c2w)
        c2w, bounds = spherify(c2w, bounds)
        to_world = np.diag([1 / scale] * 3 + [1.0]) @ frame @ np.diag([1 / radius_scale] * 3 + [1.0])
    else:
        to_world = np.diag([1 / scale] * 3 + [1.0]) @ average_pose(torch.from_numpy(c2w)).numpy()
        c2w = recentre(c2w)
    check_poses(c2w, str(pb_path))
    use_ndc = opts.ndc and not spherified

    idx = holdout_indices(n_total, split, opts.holdout_every)
    if not idx:
        raise DatasetError(f"{root}: split {split!r} is empty ({n_total} images, data.holdout_every={opts.holdout_every})")
    keep, in_split = select_views(len(idx), opts, root)
    idx = [idx[i] for i in keep]
    rgb, _ = load_rgba_stack([files[i] for i in idx], 1)  # alpha, if any, is ignored: photos
    n, h, w = rgb.shape[:3]
    full_h, full_w, focal = hwf[0]
    if abs(w / full_w - h / full_h) > 0.01 * (w / full_w):
        raise DatasetError(f"{folder}: images are {w}x{h} but {pb_path.name} says {full_w:g}x{full_h:g} "
                           "at full size (aspect ratio differs)")
    f = focal * w / full_w
    sel = c2w[idx]
    cams = Cameras(
        c2w=torch.from_numpy(sel.astype(np.float32)), fx=torch.full((n,), f), fy=torch.full((n,), f),
        cx=torch.full((n,), w / 2.0), cy=torch.full((n,), h / 2.0), width=w, height=h,
    )
    world_near, world_far = float(bounds.min()), float(bounds.max())
    if use_ndc:
        near, far = 0.0, 1.0
        bbox = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], dtype=np.float32)
    else:
        near, far = opts.near or 0.9 * world_near, opts.far or world_far
        ones = np.ones(len(c2w))
        bbox = frustum_bbox(c2w, ones * f, ones * f, ones * w / 2, ones * h / 2, w, h, near, far)
    return Scene(
        name=root.name, split=split, images=rgb, cameras=cams, near=near, far=far,
        bbox=torch.from_numpy(bbox), background=torch.zeros(3), alpha=None,
        image_names=[files[i].stem for i in idx], ndc=use_ndc,
        metadata={
            "format": "llff", "n_images": n_total, "indices": idx, "views_in_split": in_split, "bounds": bounds[idx].tolist(),
            "world_bounds": [world_near, world_far], "scale": scale, "spherify": spherified,
            "render_path": "orbit" if spherified else "spiral", "to_world": to_world.tolist(),
        },
    )
