"""Camera paths for novel-view videos: an orbit fitted to the training cameras, the
Blender-style 360 path (radius 4, 30 degrees above the horizon, world z up), and the LLFF
spiral for forward-facing scenes."""
from __future__ import annotations

import math

import torch


def look_at(eye: torch.Tensor, target: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Camera-to-world (n, 4, 4) for cameras at `eye` (n, 3) looking at `target` (3,) (OpenGL, -z forward)."""
    forward = torch.nn.functional.normalize(target - eye, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up.expand_as(forward), dim=-1), dim=-1)
    true_up = torch.cross(right, forward, dim=-1)
    c2w = torch.zeros(eye.shape[0], 4, 4, dtype=eye.dtype)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, true_up, -forward, eye
    c2w[:, 3, 3] = 1.0
    return c2w


def orbit_path(centre: torch.Tensor, up: torch.Tensor, radius: float, elevation_deg: float,
               n_frames: int) -> torch.Tensor:
    """(n_frames, 4, 4) cameras circling `centre` around axis `up` at a fixed elevation, looking at it."""
    up = torch.nn.functional.normalize(up.float(), dim=0)
    helper = torch.tensor([1.0, 0.0, 0.0]) if abs(float(up[0])) < 0.9 else torch.tensor([0.0, 1.0, 0.0])
    e1 = torch.nn.functional.normalize(torch.cross(up, helper, dim=0), dim=0)
    e2 = torch.cross(up, e1, dim=0)
    theta = torch.arange(n_frames, dtype=torch.float32) * (2 * math.pi / n_frames)
    el = math.radians(elevation_deg)
    eye = centre + radius * (math.cos(el) * (torch.cos(theta)[:, None] * e1 + torch.sin(theta)[:, None] * e2)
                             + math.sin(el) * up)
    return look_at(eye, centre.float(), up)


def blender_spherical_path(n_frames: int, radius: float = 4.0, elevation_deg: float = 30.0) -> torch.Tensor:
    """The NeRF-synthetic render path: a full turn around world z, 30 degrees up, radius 4."""
    return orbit_path(torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]), radius, elevation_deg, n_frames)


def orbit_from_poses(c2w: torch.Tensor, n_frames: int) -> torch.Tensor:
    """An orbit fitted to training cameras (n, 4, 4).

    Centre: the point nearest (least squares) to all optical axes; up: the mean camera up
    vector; radius and elevation: the cameras' mean distance from the centre and mean
    elevation above the plane through it.
    """
    origins = c2w[:, :3, 3].double()
    fwd = torch.nn.functional.normalize(-c2w[:, :3, 2].double(), dim=-1)
    proj = torch.eye(3, dtype=torch.float64) - fwd[:, :, None] * fwd[:, None, :]  # (n, 3, 3)
    a = proj.sum(0)
    b = (proj @ origins[:, :, None]).sum(0)[:, 0]
    centre = torch.linalg.lstsq(a, b).solution if torch.linalg.matrix_rank(a) == 3 else origins.mean(0)
    up = torch.nn.functional.normalize(c2w[:, :3, 1].double().mean(0), dim=0)
    offs = origins - centre
    radius = float(offs.norm(dim=-1).mean())
    el = float(torch.asin((offs @ up / offs.norm(dim=-1)).clamp(-1, 1)).mean())
    return orbit_path(centre.float(), up.float(), radius, math.degrees(el), n_frames)


def average_pose(c2w: torch.Tensor) -> torch.Tensor:
    """The mean camera (4, 4) of cameras (n, 4, 4): at the mean position, looking along the mean
    viewing direction, with x orthogonal to it and the mean up vector (LLFF's recentring frame)."""
    c2w = c2w.double()
    centre = c2w[:, :3, 3].mean(0)
    back = torch.nn.functional.normalize(c2w[:, :3, 2].sum(0), dim=0)
    up = c2w[:, :3, 1].sum(0)
    right = torch.nn.functional.normalize(torch.cross(up, back, dim=0), dim=0)
    true_up = torch.cross(back, right, dim=0)
    out = torch.eye(4, dtype=torch.float64)
    out[:3, 0], out[:3, 1], out[:3, 2], out[:3, 3] = right, true_up, back, centre
    return out


def spiral_path(c2w: torch.Tensor, near: float, far: float, n_frames: int, n_rots: float = 2.0,
                zrate: float = 0.5, focus_weight: float = 0.75, percentile: float = 90.0) -> torch.Tensor:
    """The LLFF render path (n_frames, 4, 4) for forward-facing cameras c2w (n, 4, 4).

    In the frame of the average camera, the path turns `n_rots` times around an ellipse whose
    radii are the `percentile` of the cameras' absolute offsets per axis, clipped so every
    position stays within the span (min..max per axis) of the training cameras; depth wobbles
    at `zrate` times the angular rate. Every frame looks at the point on the average viewing axis
    at the focus depth 1 / ((1 - w) / (0.9 near) + w / (5 far)), w = `focus_weight`: a distance
    between the nearest and the farthest content, weighted like disparity. near, far: the
    scene's depth bounds in world units.
    """
    avg = average_pose(c2w)
    local = (c2w[:, :3, 3].double() - avg[:3, 3]) @ avg[:3, :3]  # offsets in the average camera's axes
    rads = torch.quantile(local.abs(), percentile / 100.0, dim=0)
    rads = torch.minimum(rads, torch.minimum(local.max(0).values, -local.min(0).values).clamp_min(0.0))
    focus = 1.0 / ((1.0 - focus_weight) / (0.9 * near) + focus_weight / (5.0 * far))
    theta = torch.linspace(0.0, 2 * math.pi * n_rots, n_frames + 1, dtype=torch.float64)[:-1]
    offs = torch.stack([torch.cos(theta), -torch.sin(theta), -torch.sin(theta * zrate)], -1) * rads
    eye = avg[:3, 3] + offs @ avg[:3, :3].T
    target = avg[:3, 3] - focus * avg[:3, 2]
    return look_at(eye, target, avg[:3, 1]).float()
