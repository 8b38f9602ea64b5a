"""NDC rays (render/ndc.py): the near plane goes to -1, infinity to +1, and known cameras give
the values worked out by hand from the projection formula."""
import math

import pytest
import torch

from nerf.render.ndc import ndc_points, ndc_rays
from nerf.render.rays import RayBundle


def bundle(o, d):
    o = torch.as_tensor(o, dtype=torch.float64).reshape(-1, 3)
    d = torch.nn.functional.normalize(torch.as_tensor(d, dtype=torch.float64).reshape(-1, 3), dim=-1)
    n = o.shape[0]
    return RayBundle(o, d, torch.full((n, 1), 0.0, dtype=o.dtype), torch.full((n, 1), 10.0, dtype=o.dtype))


def test_camera_at_origin_matches_hand_computed():
    # fx = fy = 50, 100x100 image: 2 f / W = 1. The ray through pixel (75, 25) has camera
    # direction (0.5, 0.5, -1); it meets the near plane z = -1 at (0.5, 0.5, -1), which is NDC
    # (0.5, 0.5, -1), and a ray through the eye keeps its NDC x, y: direction (0, 0, 2).
    r = ndc_rays(bundle([0, 0, 0], [0.5, 0.5, -1]), 50.0, 50.0, 100, 100, near_plane=1.0)
    assert torch.allclose(r.origins, torch.tensor([[0.5, 0.5, -1.0]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(r.directions, torch.tensor([[0.0, 0.0, 2.0]], dtype=torch.float64), atol=1e-12)
    assert r.near.item() == 0.0 and r.far.item() == 1.0


def test_offset_camera_matches_hand_computed():
    # o = (0.2, -0.1, 0.3), d ~ (0.1, 0.2, -1), fx = fy = 50, W = 100, H = 80: ax = 1, ay = 1.25.
    # Near-plane point: t = 1.3 along (0.1, 0.2, -1) -> (0.33, 0.16, -1).
    # o' = (-1 * 0.33 / -1, -1.25 * 0.16 / -1, 1 + 2 / -1) = (0.33, 0.2, -1)
    # d' = (-1 * (0.1/-1 - 0.33/-1), -1.25 * (0.2/-1 - 0.16/-1), -2 / -1) = (-0.23, 0.05, 2)
    r = ndc_rays(bundle([0.2, -0.1, 0.3], [0.1, 0.2, -1.0]), 50.0, 50.0, 100, 80, near_plane=1.0)
    assert torch.allclose(r.origins, torch.tensor([[0.33, 0.2, -1.0]], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(r.directions, torch.tensor([[-0.23, 0.05, 2.0]], dtype=torch.float64), atol=1e-12)
    # the world view direction travels along unchanged
    assert torch.allclose(r.view_directions, torch.nn.functional.normalize(
        torch.tensor([[0.1, 0.2, -1.0]], dtype=torch.float64), dim=-1))


@pytest.mark.parametrize("near_plane", [1.0, 0.5])
def test_near_plane_to_minus_one_and_infinity_to_plus_one(near_plane):
    g = torch.Generator().manual_seed(0)
    n = 64
    o = (torch.rand(n, 3, generator=g, dtype=torch.float64) - 0.5) * 0.4
    d = torch.cat([(torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5), -torch.ones(n, 1, dtype=torch.float64)], -1)
    rays = bundle(o, d)
    fx = torch.full((n,), 400.0, dtype=torch.float64)
    r = ndc_rays(rays, fx, fx * 1.1, 504, 378, near_plane=near_plane)
    # the ray's world point on the near plane z = -near is the NDC origin, at NDC depth -1
    t_near = (-near_plane - rays.origins[:, 2]) / rays.directions[:, 2]
    p_near = rays.origins + t_near[:, None] * rays.directions
    assert torch.allclose(ndc_points(p_near, fx, fx * 1.1, 504, 378, near_plane), r.origins, atol=1e-10)
    assert torch.allclose(r.origins[:, 2], torch.full((n,), -1.0, dtype=torch.float64))
    # far along the world ray, the NDC point tends to o' + d' (NDC depth +1)
    p_far = rays.origins + 1e9 * rays.directions
    assert torch.allclose(ndc_points(p_far, fx, fx * 1.1, 504, 378, near_plane), r.origins + r.directions, atol=1e-6)
    assert torch.allclose((r.origins + r.directions)[:, 2], torch.ones(n, dtype=torch.float64))
    # every world point in between lies on the NDC ray, at s in (0, 1) growing with t
    prev = torch.zeros(n, dtype=torch.float64)
    for t in (0.5, 2.0, 10.0, 100.0):
        p = ndc_points(p_near + t * rays.directions, fx, fx * 1.1, 504, 378, near_plane)
        s = (p[:, 2] - r.origins[:, 2]) / r.directions[:, 2]
        assert torch.allclose(p, r.origins + s[:, None] * r.directions, atol=1e-9)
        assert torch.all(s > prev) and torch.all(s < 1)
        prev = s


def test_raygen_uses_ndc_for_ndc_scenes():
    from nerf.datasets.scene import Cameras
    from nerf.models.base import SceneInfo
    from nerf.scene_rays import view_pixel_rays

    cams = Cameras(c2w=torch.eye(4)[None], fx=torch.tensor([20.0]), fy=torch.tensor([20.0]),
                   cx=torch.tensor([8.0]), cy=torch.tensor([6.0]), width=16, height=12)
    info = SceneInfo(near=0.0, far=1.0, bbox=[[-1] * 3, [1] * 3], background=None, ndc=True)
    rays = view_pixel_rays(cams, 0, info, 0, 16 * 12)
    assert torch.allclose(rays.origins[:, 2], torch.full((16 * 12,), -1.0))
    assert rays.near.max() == 0 and rays.far.min() == 1
    assert rays.origins[:, :2].abs().max() < 1  # pixel centres project inside the NDC square
    assert math.isclose(float(rays.view_directions.norm(dim=-1).mean()), 1.0, rel_tol=1e-6)
