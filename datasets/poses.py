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


def points_depth_range(c2w: np.ndarray, intrinsics: np.ndarray, xyz: np.ndarray) -> tuple[float, float] | None:
    """(near, far) from sparse points (m, 3) without their visibility: for each camera (n, 4, 4,
    OpenGL) with intrinsics (n, 6: fx, fy, cx, cy, width, height), the points inside its image and
    in front of it; the 0.1 percentile of their depth along the optical axis and the 99.9 percentile
    of their distance, widened by 10% either way over all cameras, as COLMAP's points give it with
    visibility (`colmap.depth_range`). None when no camera sees a point."""
    nears, fars = [], []
    for pose, (fx, fy, cx, cy, w, h) in zip(np.asarray(c2w, dtype=np.float64), np.asarray(intrinsics, np.float64)):
        cam = (xyz - pose[:3, 3]) @ pose[:3, :3]  # camera axes, OpenGL: looking along -z
        z = -cam[:, 2]
        front = z > 1e-9
        u = fx * cam[front, 0] / z[front] + cx
        v = -fy * cam[front, 1] / z[front] + cy
        seen = (u >= 0) & (u <= w) & (v >= 0) & (v <= h)
        if seen.any():
            nears.append(np.percentile(z[front][seen], 0.1))
            fars.append(np.percentile(np.linalg.norm(cam[front][seen], axis=-1), 99.9))
    if not nears:
        return None
    return 0.9 * float(min(nears)), 1.1 * float(max(fars))


def view_directions(c2w: np.ndarray) -> np.ndarray:
    """(n, 3) unit directions the cameras (n, 4, 4) look along (OpenGL: their -z axis)."""
    fwd = -np.asarray(c2w, dtype=np.float64)[:, :3, 2]
    return fwd / np.maximum(np.linalg.norm(fwd, axis=-1, keepdims=True), 1e-12)


def is_forward_facing(c2w: np.ndarray, max_angle_deg: float = 30.0) -> bool:
    """Whether every camera (n, 4, 4) looks within `max_angle_deg` of the cameras' mean view
    direction: LLFF's forward-facing captures (a few degrees) rather than walk-arounds (tens)."""
    fwd = view_directions(c2w)
    mean = fwd.mean(0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-9:
        return False
    return bool(np.all(fwd @ (mean / norm) >= np.cos(np.radians(max_angle_deg))))


def axes_focus(c2w: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(3,) the point closest (least squares) to all optical axes of the cameras (n, 4, 4), pulled
    weakly towards the cameras' mean position so that parallel axes still give a point."""
    origins, fwd = np.asarray(c2w, dtype=np.float64)[:, :3, 3], view_directions(c2w)
    proj = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]
    a = proj.sum(0) + ridge * len(origins) * np.eye(3)
    b = (proj @ origins[:, :, None]).sum(0)[:, 0] + ridge * origins.sum(0)
    return np.linalg.solve(a, b)


def frusta_box(c2w: np.ndarray, fx: np.ndarray, fy: np.ndarray, cx: np.ndarray, cy: np.ndarray,
               width: np.ndarray, height: np.ndarray, min_half_size: float = 2.0, res: int = 48,
               share: float = 0.5, view_factor: float = 1.5, max_cameras: int = 128) -> np.ndarray:
    """(2, 3) box of where the cameras' (n, 4, 4) view frusta meet: the content a capture is
    centred on, for files that give no box and no points.

    1. A cube around `axes_focus` (half-size: 1.5 times the median camera distance from it, at
       least `min_half_size`) is cut into res^3 cells; the box holds the cells whose centres at
       least `share` of the cameras see (in front of the camera and inside its image), padded by
       one cell. When no cell is seen by that many cameras (cameras looking outward, or along a
       facade) it is the whole cube.
    2. Where the frusta meet and the cameras look at the focus (median depth > 0), the box is clipped
       to a cube around it of half-size `view_factor` times the median half-width each camera sees
       at the focus (its depth times the tangent of its narrower half field of view): what the
       photos frame is no larger, while the frusta of an arc of cameras also meet far behind it.
    Intrinsics (n,) per camera, in pixels of images width x height (n,); lens distortion is
    ignored (the padding covers it). At most `max_cameras`, evenly spaced, are used.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    keep = np.unique(np.linspace(0, len(c2w) - 1, min(len(c2w), max_cameras)).round().astype(int))
    c2w = c2w[keep]
    fx, fy, cx, cy, width, height = (np.asarray(v, dtype=np.float64)[keep] for v in (fx, fy, cx, cy, width, height))
    focus = axes_focus(c2w)
    origins = c2w[:, :3, 3]
    half = max(1.5 * float(np.median(np.linalg.norm(origins - focus, axis=-1))), min_half_size)
    ticks = (np.arange(res) + 0.5) / res * 2 * half - half
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3) + focus
    seen = np.zeros(len(grid), dtype=np.int32)
    for i in range(len(c2w)):
        cam = (grid - origins[i]) @ c2w[i, :3, :3]  # world -> camera: R^T (p - o)
        depth = -cam[:, 2]
        safe = np.maximum(depth, 1e-9)
        u = cx[i] + fx[i] * cam[:, 0] / safe
        v = cy[i] - fy[i] * cam[:, 1] / safe
        seen += (depth > 0) & (u >= 0) & (u <= width[i]) & (v >= 0) & (v <= height[i])
    inside = seen >= share * len(c2w)
    lo, hi = focus - half, focus + half
    if inside.any():
        pts = grid[inside]
        cell = 2 * half / res
        lo, hi = np.maximum(pts.min(0) - cell, lo), np.minimum(pts.max(0) + cell, hi)
    depth = ((focus - origins) * view_directions(c2w)).sum(-1)
    if inside.any() and np.median(depth) > 0:
        tan_half = np.minimum(width / (2 * fx), height / (2 * fy))
        r = view_factor * float(np.median(np.maximum(depth, 0.0) * tan_half))
        clo, chi = np.maximum(lo, focus - r), np.minimum(hi, focus + r)
        if np.all(chi > clo):
            lo, hi = clo, chi
    return np.stack([lo, hi])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale s, rotation R (3, 3) and translation t minimising |s R src + t - dst|^2 over points
    (n, 3) (Umeyama's closed form): how two reconstructions of one capture line up."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, sv, vt = np.linalg.svd(cov)
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    s = float(np.trace(np.diag(sv) @ d) / ((src - mu_s) ** 2).sum(-1).mean())
    return s, rot, mu_d - s * rot @ mu_s


def aligned_pose_errors(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per camera, the rotation error in degrees and the centre error as a fraction of the
    reference cameras' spread (largest distance from their mean), of camera-to-world poses
    `est` against `ref` (n, 4, 4) once the centres are aligned by a similarity."""
    s, rot, t = similarity_transform(est[:, :3, 3], ref[:, :3, 3])
    centres = (s * (rot @ est[:, :3, 3].T)).T + t
    spread = np.linalg.norm(ref[:, :3, 3] - ref[:, :3, 3].mean(0), axis=-1).max()
    centre_err = np.linalg.norm(centres - ref[:, :3, 3], axis=-1) / spread
    rel = np.einsum("nji,njk->nik", rot @ est[:, :3, :3], ref[:, :3, :3])
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    return angle, centre_err
