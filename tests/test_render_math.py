"""Volume rendering, sampling and ray generation against analytic results."""
import math

import torch

from nerf.datasets.scene import Cameras
from nerf.render.composite import composite, weights_from_alpha
from nerf.render.rays import image_rays, rays_from_pixels
from nerf.render.samplers import merge_edges, midpoints, sample_pdf, stratified_edges


def _homogeneous(sigma: float, near: float, far: float, n: int):
    edges = torch.linspace(near, far, n + 1, dtype=torch.float64)[None]
    sig = torch.full((1, n), sigma, dtype=torch.float64)
    rgb = torch.full((1, n, 3), 0.25, dtype=torch.float64)
    return composite(sig, rgb, edges, torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))


def test_homogeneous_medium_opacity_is_exact():
    for sigma in (0.1, 0.7, 3.0):
        out = _homogeneous(sigma, 2.0, 6.0, 64)
        expected = 1 - math.exp(-sigma * 4.0)
        assert abs(out["opacity"].item() - expected) < 1e-12
        # colour: 0.25 where absorbed, white background behind
        assert abs(out["rgb"][0, 0].item() - (0.25 * expected + (1 - expected))) < 1e-12


def test_homogeneous_medium_expected_depth_matches_integral():
    sigma, near, far = 0.8, 2.0, 6.0
    d = far - near
    # E = int_near^far t sigma exp(-sigma (t - near)) dt
    analytic = near * (1 - math.exp(-sigma * d)) + (1 - math.exp(-sigma * d) * (1 + sigma * d)) / sigma
    out = _homogeneous(sigma, near, far, 4096)
    assert abs(out["expected_depth"].item() - analytic) < 1e-5
    assert abs(out["depth"].item() - analytic / (1 - math.exp(-sigma * d))) < 1e-5


def test_weights_sum_to_opacity_and_stay_below_one():
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(256, 48, generator=g) * 20
    edges = torch.sort(torch.rand(256, 49, generator=g) * 4 + 2, -1).values
    out = composite(sigma, torch.rand(256, 48, 3, generator=g), edges, None)
    w = out["weights"]
    assert torch.all(w >= 0)
    assert torch.allclose(w.sum(-1, keepdim=True), out["opacity"], atol=1e-6)
    assert out["opacity"].max() <= 1.0 + 1e-6


def test_weights_from_alpha_matches_product_formula():
    alpha = torch.tensor([[0.2, 0.5, 0.9, 0.3]], dtype=torch.float64)
    w = weights_from_alpha(alpha)
    expected = [0.2, 0.8 * 0.5, 0.8 * 0.5 * 0.9, 0.8 * 0.5 * 0.1 * 0.3]
    assert torch.allclose(w[0], torch.tensor(expected, dtype=torch.float64), atol=1e-12)


def test_stratified_edges_cover_the_interval_in_order():
    near, far = torch.full((100, 1), 2.0), torch.full((100, 1), 6.0)
    plain = stratified_edges(near, far, 8, jitter=False)
    assert torch.allclose(plain[0], torch.linspace(2, 6, 9))
    jit = stratified_edges(near, far, 8, jitter=True, generator=torch.Generator().manual_seed(1))
    assert torch.all(jit[:, 1:] >= jit[:, :-1])
    assert torch.all(jit[:, 0] >= 2.0) and torch.all(jit[:, -1] <= 6.0)
    # each midpoint stays within its stratum [2 + k/2, 2 + (k+1)/2]
    mids = midpoints(jit)
    k = torch.arange(8)
    assert torch.all(mids >= 2 + k * 0.5 - 0.25) and torch.all(mids <= 2 + (k + 1) * 0.5 + 0.25)


def test_importance_samples_concentrate_where_weights_are():
    edges = torch.linspace(0.0, 1.0, 11)[None].repeat(500, 1)
    weights = torch.zeros(500, 10)
    weights[:, 7] = 1.0  # all mass in [0.7, 0.8]
    s = sample_pdf(edges, weights, 64, deterministic=False, generator=torch.Generator().manual_seed(0))
    inside = ((s >= 0.7) & (s <= 0.8)).float().mean().item()
    assert inside > 0.99
    # two bins with weights 1:3 receive samples in that ratio
    weights = torch.zeros(500, 10)
    weights[:, 2], weights[:, 5] = 1.0, 3.0
    s = sample_pdf(edges, weights, 200, deterministic=False, generator=torch.Generator().manual_seed(0))
    a = ((s >= 0.2) & (s < 0.3)).float().mean().item()
    b = ((s >= 0.5) & (s < 0.6)).float().mean().item()
    assert abs(a - 0.25) < 0.01 and abs(b - 0.75) < 0.01
    merged = merge_edges(edges, s)
    assert merged.shape == (500, 211) and torch.all(merged[:, 1:] >= merged[:, :-1])


def test_zero_weights_sample_uniformly():
    edges = torch.linspace(0.0, 1.0, 5)[None]
    s = sample_pdf(edges, torch.zeros(1, 4), 9, deterministic=True)
    assert torch.allclose(s[0], torch.linspace(0, 1, 9), atol=1e-4)


def _camera(c2w: torch.Tensor) -> Cameras:
    one = lambda v: torch.tensor([float(v)])  # noqa: E731
    return Cameras(c2w=c2w[None], fx=one(100), fy=one(50), cx=one(40), cy=one(30), width=80, height=60)


def test_known_camera_gives_known_rays():
    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([1.0, 2.0, 3.0])
    cam = _camera(c2w)
    # the principal point looks straight down -z
    r = rays_from_pixels(cam, torch.tensor([0]), torch.tensor([40.0]), torch.tensor([30.0]), 2.0, 6.0)
    assert torch.allclose(r.origins[0], torch.tensor([1.0, 2.0, 3.0]))
    assert torch.allclose(r.directions[0], torch.tensor([0.0, 0.0, -1.0]))
    # 100 px right (fx = 100) is 45 degrees right; 50 px down (fy = 50) is 45 degrees down
    r = rays_from_pixels(cam, torch.tensor([0, 0]), torch.tensor([140.0, 40.0]), torch.tensor([30.0, 80.0]), 2.0, 6.0)
    s = 1 / math.sqrt(2)
    assert torch.allclose(r.directions, torch.tensor([[s, 0.0, -s], [0.0, -s, -s]]), atol=1e-6)
    assert torch.allclose(r.near, torch.full((2, 1), 2.0)) and torch.allclose(r.far, torch.full((2, 1), 6.0))


def test_rotated_camera_and_pixel_centres():
    # camera rotated 90 degrees about y: its -z axis points to world -x
    c2w = torch.tensor([[0.0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]])
    rays = image_rays(_camera(c2w), 0, 1.0, 2.0)
    assert len(rays) == 80 * 60
    d = rays.directions.reshape(60, 80, 3)
    # pixel (row 29, col 39) has centre (39.5, 29.5): half a pixel left of and above the principal point
    cam_dir = torch.tensor([-0.5 / 100, 0.5 / 50, -1.0])
    expected = torch.nn.functional.normalize(c2w[:3, :3] @ cam_dir, dim=0)
    assert torch.allclose(d[29, 39], expected, atol=1e-6)
    assert d[29, 39, 0] < -0.99  # looking down world -x
