"""Checks and small conversions of camera poses shared by the loaders."""
from __future__ import annotations

import numpy as np

from nerf.datasets.errors import DatasetError


def check_poses(c2w: np.ndarray, source: str, tol: float = 1e-2) -> None:
    """Refuse poses that are not finite rigid transforms; the message names `source` and the index."""
    if not np.all(np.isfinite(c2w)):
        bad = int(np.argwhere(~np.isfinite(c2w).reshape(len(c2w), -1).all(axis=1))[0, 0])
        raise DatasetError(f"{source}: pose {bad} has non-finite values")
    rot = c2w[:, :3, :3]
    gram = rot @ np.swapaxes(rot, 1, 2)
    err = np.abs(gram - np.eye(3)).reshape(len(c2w), -1).max(axis=1)
    if np.any(err > tol):
        bad = int(np.argmax(err > tol))
        raise DatasetError(f"{source}: pose {bad} is not a rigid transform (rotation not orthonormal)")
    det = np.linalg.det(rot)
    if np.any(det < 0):
        bad = int(np.argmax(det < 0))
        raise DatasetError(f"{source}: pose {bad} is a reflection (negative determinant)")


def to_homogeneous(c2w: np.ndarray) -> np.ndarray:
    """(n, 3, 4) or (n, 4, 4) -> (n, 4, 4) float32."""
    c2w = np.asarray(c2w, dtype=np.float64)
    if c2w.shape[1:] == (3, 4):
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (len(c2w), 1, 4))
        c2w = np.concatenate([c2w, bottom], axis=1)
    return c2w.astype(np.float32)


def normalize_cameras(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre cameras (n, 4, 4) on their mean position and scale them into the unit ball.

    Returns the moved poses and the (centre, scale) applied: x_new = (x - centre) * scale. The
    furthest camera ends on the unit sphere (the convention the scene contraction of
    `render.contraction` expects); a single camera or coincident ones are only centred.
    """
    c2w = np.array(c2w, dtype=np.float64)
    centre = c2w[:, :3, 3].mean(axis=0)
    radius = float(np.linalg.norm(c2w[:, :3, 3] - centre, axis=-1).max())
    scale = 1.0 / radius if radius > 1e-9 else 1.0
    c2w[:, :3, 3] = (c2w[:, :3, 3] - centre) * scale
    return c2w, centre, scale


def holdout_indices(n: int, split: str, every: int) -> list[int]:
    """The views of `split` when a format has no split of its own: every `every`-th view
    (0, every, 2 every, ...) is held out for test (and val, the same views); the rest train."""
    held = list(range(0, n, every))
    if split == "train":
        return [i for i in range(n) if i % every != 0]
    return held


def frustum_bbox(c2w: np.ndarray, fx: np.ndarray, fy: np.ndarray, cx: np.ndarray, cy: np.ndarray,
                 width: int, height: int, near: float, far: float) -> np.ndarray:
    """(2, 3) axis-aligned box around every camera's view frustum between `near` and `far` (ray
    distance): a loose bound of what the cameras can see, for scenes without a known box."""
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], dtype=np.float64)
    pts = [c2w[:, :3, 3]]
    for u, v in corners:
        d = np.stack([(u - cx) / fx, -(v - cy) / fy, -np.ones_like(fx)], -1)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        d_world = np.einsum("nij,nj->ni", c2w[:, :3, :3], d)
        for t in (near, far):
            pts.append(c2w[:, :3, 3] + t * d_world)
    pts = np.concatenate(pts, 0)
    return np.stack([pts.min(0), pts.max(0)]).astype(np.float32)


def box_bounds(c2w: np.ndarray, bbox: np.ndarray, min_fraction: float = 0.02) -> tuple[float, float]:
    """Ray bounds (near, far) for cameras (n, 4, 4) looking at content inside `bbox` (2, 3): far is
    the largest camera-to-corner distance, near the smallest camera-to-box distance (at least
    `min_fraction` of far, for cameras inside the box)."""
    pos = c2w[:, :3, 3]
    corners = np.array([[bbox[i, 0], bbox[j, 1], bbox[k, 2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)])
    far = float(np.linalg.norm(pos[:, None] - corners[None], axis=-1).max())
    gap = np.maximum(np.maximum(bbox[0] - pos, pos - bbox[1]), 0.0)
    near = max(float(np.linalg.norm(gap, axis=-1).min()), min_fraction * far)
    return near, far
