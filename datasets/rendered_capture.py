"""Photo captures rendered from the built-in scene with known cameras, for checking structure
from motion (process-data) against the truth.

The built-in scene's own textures (stripes, a soft checker) give SIFT only ~60 features per
320x240 view, too few to register; these renders multiply the scene's colour by a 3-D
value-noise texture fixed to the surfaces (the same from every view), which gives several
hundred. The cameras circle the scene with a wobble in height and distance; `fisheye_cameras`
brings them closer and looks through an OpenCV fisheye lens.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from nerf.datasets.scene import Cameras
from nerf.datasets.synthetic import FAR, NEAR, shade
from nerf.render.distortion import lens_focal
from nerf.render.paths import look_at
from nerf.render.rays import image_rays

N_VIEWS, WIDTH, HEIGHT = 36, 320, 240
FOV_DEGREES = 45.0
FISHEYE_FOV = 120.0  # degrees across the width
FISHEYE_LENS = (0.03, -0.01, 0.0, 0.0)  # OpenCV fisheye k1-k4
FISHEYE_SIZE = (480, 360)
FISHEYE_DISTANCE = 0.5  # of the ring's: close enough that the scene fills the middle of the view


def ring_cameras(n: int = N_VIEWS) -> Cameras:
    """n cameras circling the scene's centre, 18-42 degrees up and 3.3-3.9 away, looking at it."""
    t = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    el = torch.deg2rad(30 + 12 * torch.sin(2 * t))
    r = 3.6 + 0.3 * torch.cos(3 * t)
    eye = torch.stack([r * torch.cos(el) * torch.cos(t), r * torch.cos(el) * torch.sin(t), r * torch.sin(el)], -1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    f = lens_focal(FOV_DEGREES, WIDTH, fisheye=False)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(f), fy=full(f), cx=full(WIDTH / 2), cy=full(HEIGHT / 2), width=WIDTH,
                   height=HEIGHT)


def fisheye_cameras(n: int = N_VIEWS) -> Cameras:
    """The ring of `ring_cameras` at half its distance, seen through an equidistant fisheye
    (OpenCV's model: k1-k4) with a 120-degree horizontal field of view (about 150 across the
    diagonal)."""
    c2w = ring_cameras(n).c2w.clone()
    c2w[:, :3, 3] *= FISHEYE_DISTANCE
    w, h = FISHEYE_SIZE
    f = lens_focal(FISHEYE_FOV, w, fisheye=True)
    k1, k2, k3, k4 = FISHEYE_LENS
    lens = torch.tensor([k1, k2, 0.0, 0.0, k3, k4, 1.0]).expand(n, 7).contiguous()
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(f), fy=full(f), cx=full(w / 2), cy=full(h / 2), width=w, height=h,
                   distortion=lens)


def surface_texture(points: torch.Tensor) -> torch.Tensor:
    """A value-noise pattern (n,) in [0.25, 1] fixed to 3-D positions: two octaves of random
    values on 24^3 and 72^3 grids over the scene's box, trilinearly interpolated, contrast raised."""
    g = torch.Generator().manual_seed(0)
    grid = (points / 1.2).clamp(-1, 1).reshape(1, 1, 1, -1, 3)
    v = sum(torch.nn.functional.grid_sample(torch.rand(1, 1, r, r, r, generator=g), grid, align_corners=True).reshape(-1)
            for r in (24, 72)) / 2
    return 0.25 + 0.75 * torch.sigmoid(10 * (v - 0.5))


def render_views(cams: Cameras) -> np.ndarray:
    """(n, height, width, 3) uint8 views of the built-in scene, textured, over white."""
    views = []
    for i in range(len(cams)):
        rays = image_rays(cams, i, NEAR, FAR)
        colour, t = shade(rays.origins, rays.directions)
        hit = torch.isfinite(t)
        p = rays.origins + rays.directions * t.nan_to_num(posinf=0.0)[:, None]
        rgb = torch.where(hit[:, None], colour * surface_texture(p)[:, None], torch.ones(3))
        views.append((rgb.reshape(cams.height, cams.width, 3).clamp(0, 1) * 255 + 0.5).byte().numpy())
    return np.stack(views)
