"""Normalised device coordinates (NDC) for forward-facing scenes (the NeRF paper, appendix C).

A forward-facing scene is recentred so that the cameras look roughly down world -z. The
perspective projection of a pinhole of focal lengths fx, fy and image size W x H maps a point
p = (x, y, z) with z < 0 to

    ndc(p) = (-(2 fx / W) x / z,  -(2 fy / H) y / z,  1 + 2 n / z)

so the plane z = -n (the near plane) goes to NDC depth -1 and z -> -inf goes to +1: the whole
unbounded frustum becomes the cube [-1, 1]^3, and sampling linearly in NDC depth is sampling
linearly in disparity in the world.

A world ray o + t d (any t >= 0 in front of the near plane) is first moved to start on the near
plane, o_n = o + t_n d with t_n = -(n + o_z) / d_z, and then becomes the straight NDC ray
o' + s d', s in [0, 1):

    o' = ndc(o_n)
    d' = (-(2 fx / W) (d_x / d_z - o_x / o_z),  -(2 fy / H) (d_y / d_z - o_y / o_z),  -2 n / o_z)

(o_x, o_y, o_z now the near-plane point). Only the ratios d_x / d_z and d_y / d_z enter, so the
result is the same for unit-length directions (ours) as for the unnormalised camera rays of
the reference code. The NDC depth of the world point at parameter t is s = 1 - o_z / (o_z + t' d_z)
with t' = t - t_n: s = 0 at the near plane, s -> 1 at infinity, so the returned bundle has
near = 0 and far = 1. `d'` is not unit length; the unit world direction travels along as
`viewdirs` for the view-dependent colour.
"""
from __future__ import annotations

import torch

from nerf.render.rays import RayBundle


def ndc_points(points: torch.Tensor, fx, fy, width: int, height: int, near_plane: float = 1.0) -> torch.Tensor:
    """World points (..., 3) with z < 0 mapped to NDC (..., 3); fx, fy broadcast against (...)."""
    ax = 2.0 * torch.as_tensor(fx, dtype=points.dtype, device=points.device) / width
    ay = 2.0 * torch.as_tensor(fy, dtype=points.dtype, device=points.device) / height
    x, y, z = points.unbind(-1)
    return torch.stack([-ax * x / z, -ay * y / z, 1.0 + 2.0 * near_plane / z], -1)


def ndc_rays(rays: RayBundle, fx, fy, width: int, height: int, near_plane: float = 1.0) -> RayBundle:
    """World rays (n_rays) -> NDC rays with near 0 and far 1 (see the module docstring).

    fx, fy: focal lengths in pixels, floats or (n_rays,) tensors; width, height: image size in
    pixels (the principal point is taken at the image centre, as NDC assumes). Rays must point
    towards -z (d_z < 0), as the rays of a recentred forward-facing scene do; others give finite
    but meaningless NDC rays.
    """
    o, d = rays.origins, rays.directions
    n = rays.origins.shape[0]
    ax = (2.0 * torch.as_tensor(fx, dtype=o.dtype, device=o.device) / width).expand(n)
    ay = (2.0 * torch.as_tensor(fy, dtype=o.dtype, device=o.device) / height).expand(n)
    dz = d[:, 2].clamp(max=-1e-6)  # rays that do not point towards -z have no NDC image: keep them finite
    t_near = -(near_plane + o[:, 2]) / dz
    o = o + t_near[:, None] * d
    ox, oy, oz = o.unbind(-1)
    dx, dy = d[:, 0], d[:, 1]
    origins = torch.stack([-ax * ox / oz, -ay * oy / oz, 1.0 + 2.0 * near_plane / oz], -1)
    directions = torch.stack([-ax * (dx / dz - ox / oz), -ay * (dy / dz - oy / oz), -2.0 * near_plane / oz], -1)
    return RayBundle(
        origins=origins, directions=directions,
        near=torch.zeros_like(rays.near), far=torch.ones_like(rays.far),
        viewdirs=rays.view_directions,
    )
