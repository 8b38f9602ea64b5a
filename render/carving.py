"""Silhouette carving: which points of space can hold content, given the training cameras and
their alpha masks (the visual hull).

A point that projects inside some training image where that image is transparent cannot hold
anything opaque, so a radiance field need never be sampled there. Used to start an occupancy
grid from the data (render/occupancy.py) instead of from a box full of fog, which is what makes
the first minutes of a fast run cheap. Only for captures with alpha (Blender, masked
transforms.json). The mask is dilated by the footprint of a cell (plus a margin) so a
surface is never carved: a test checks this against the built-in scene's true geometry.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def project(points: torch.Tensor, c2w: torch.Tensor, fx: float, fy: float, cx: float, cy: float):
    """Pixel coordinates x, y (m,) and depth in front of the camera (m,) of world points (m, 3)
    for an OpenGL camera (looking down -z, y up; pixel centres at +0.5)."""
    rot, centre = c2w[:3, :3], c2w[:3, 3]
    cam = (points - centre) @ rot  # world -> camera: R^T (p - c)
    depth = -cam[:, 2]
    safe = depth.clamp_min(1e-6)
    return cx + fx * cam[:, 0] / safe, cy - fy * cam[:, 1] / safe, depth


@torch.no_grad()
def silhouette_hull(points: torch.Tensor, cameras, alpha: torch.Tensor, radius: float,
                    threshold: float = 0.01, margin_px: int = 1, chunk: int = 1 << 20) -> torch.Tensor:
    """Whether each point (m, 3) may hold content: False when, in any camera that sees it in
    front of it and inside its image, the alpha (n, H, W) within the footprint of a sphere of
    `radius` around the point (plus `margin_px`) stays below `threshold`. Loops over cameras
    (tens to hundreds), never over points."""
    alive = torch.arange(points.shape[0], device=points.device)  # points not carved yet
    h, w = alpha.shape[1:]
    for i in range(len(cameras)):
        if alive.numel() == 0:
            break
        c2w = cameras.c2w[i].to(points)
        fx, fy, cx, cy = (float(v[i]) for v in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
        near = float((points[alive] - c2w[:3, 3]).norm(dim=-1).min().clamp_min(radius * 1.01))
        # dilation that covers the projected sphere at the nearest point: valid for all farther ones
        r = int(math.ceil(max(fx, fy) * radius / (near - radius))) + margin_px
        seen = F.max_pool2d(alpha[i][None, None].float(), 2 * r + 1, stride=1, padding=r)[0, 0] >= threshold
        survivors = []
        for s in range(0, alive.numel(), chunk):
            idx = alive[s:s + chunk]
            x, y, depth = project(points[idx], c2w, fx, fy, cx, cy)
            inside = (depth > 0) & (x >= 0) & (x < w) & (y >= 0) & (y < h)
            ok = ~inside | seen[y.clamp(0, h - 1).long(), x.clamp(0, w - 1).long()]
            survivors.append(idx[ok])
        alive = torch.cat(survivors)
    keep = torch.zeros(points.shape[0], dtype=torch.bool, device=points.device)
    keep[alive] = True
    return keep


@torch.no_grad()
def camera_coverage(points: torch.Tensor, radii: torch.Tensor, cameras, near: float = 0.0,
                    margin_px: float = 1.0, chunk: int = 1 << 20) -> torch.Tensor:
    """How many cameras see each sphere (points (m, 3), radii (m,)): some of it lies beyond
    `near` in front of the camera and projects inside the image (the image grown by the
    sphere's footprint plus `margin_px`). A captured scene is learned only where cameras look,
    so a cell no camera sees holds whatever density the field starts with for good (instant-ngp
    marks such cells empty). Loops over cameras, never over points."""
    count = torch.zeros(points.shape[0], dtype=torch.int32, device=points.device)
    w, h = cameras.width, cameras.height
    for i in range(len(cameras)):
        c2w = cameras.c2w[i].to(points)
        fx, fy, cx, cy = (float(v[i]) for v in (cameras.fx, cameras.fy, cameras.cx, cameras.cy))
        for s in range(0, points.shape[0], chunk):
            p, r = points[s:s + chunk], radii[s:s + chunk]
            x, y, depth = project(p, c2w, fx, fy, cx, cy)
            ahead = depth + r > near
            # the sphere's footprint in pixels; a sphere around the camera's own plane sees all
            pad = torch.where(depth > r, max(fx, fy) * r / (depth - r).clamp_min(1e-6), torch.full_like(r, 1e9))
            pad = pad + margin_px
            inside = (x >= -pad) & (x <= w + pad) & (y >= -pad) & (y <= h + pad)
            count[s:s + chunk] += (ahead & inside).int()
    return count
