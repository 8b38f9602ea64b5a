"""Lens distortion: rays through distorted pixels match an undistortion computed here, by
fixed-point iteration of the forward model (the classic OpenCV approach), not by Newton."""
import torch

from nerf.datasets.scene import Cameras
from nerf.render.distortion import distort_normalized, undistort_points
from nerf.render.rays import rays_from_pixels

DIST = torch.tensor([-0.25, 0.06, 0.0015, -0.002], dtype=torch.float64)


def forward(x, y, k1, k2, p1, p2):
    """OpenCV's radial-tangential model, written out again."""
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


def fixed_point_undistort(xd, yd, k1, k2, p1, p2, iters=200):
    x, y = xd.clone(), yd.clone()
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x, y = (xd - dx) / radial, (yd - dy) / radial
    return x, y


def test_forward_model_matches():
    g = torch.Generator().manual_seed(1)
    x, y = (torch.rand(2, 100, generator=g, dtype=torch.float64) - 0.5)
    a = distort_normalized(x, y, DIST)
    b = forward(x, y, *DIST.tolist())
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


def test_undistortion_matches_fixed_point_iteration():
    fx, fy, cx, cy = 300.0, 310.0, 160.2, 119.7
    ys, xs = torch.meshgrid(torch.arange(0, 240, 7.0, dtype=torch.float64),
                            torch.arange(0, 320, 9.0, dtype=torch.float64), indexing="ij")
    u, v = xs.reshape(-1) + 0.5, ys.reshape(-1) + 0.5
    n = u.shape[0]
    xu, yu = undistort_points(u, v, fx, fy, cx, cy, DIST.expand(n, 4))
    ref_x, ref_y = fixed_point_undistort((u - cx) / fx, (v - cy) / fy, *DIST.tolist())
    assert torch.allclose((xu - cx) / fx, ref_x, atol=1e-9)
    assert torch.allclose((yu - cy) / fy, ref_y, atol=1e-9)


def test_rays_through_distorted_pixels_see_the_ideal_points():
    """Distort known ideal directions with the forward model; the rays generated for those
    distorted pixels must point along the ideal directions (per camera intrinsics)."""
    g = torch.Generator().manual_seed(2)
    n = 200
    x_ideal, y_ideal = (torch.rand(2, n, generator=g) - 0.5) * torch.tensor([[1.0], [0.75]])
    fx, fy, cx, cy = 300.0, 310.0, 160.2, 119.7
    xd, yd = forward(x_ideal.double(), y_ideal.double(), *DIST.tolist())
    u, v = (xd * fx + cx).float(), (yd * fy + cy).float()
    angle = 0.3
    rot = torch.tensor([[1, 0, 0], [0, torch.cos(torch.tensor(angle)), -torch.sin(torch.tensor(angle))],
                        [0, torch.sin(torch.tensor(angle)), torch.cos(torch.tensor(angle))]])
    c2w = torch.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot, torch.tensor([0.5, -1.0, 2.0])
    full = lambda v: torch.full((1,), v)  # noqa: E731
    cams = Cameras(c2w=c2w[None], fx=full(fx), fy=full(fy), cx=full(cx), cy=full(cy), width=320, height=240,
                   distortion=DIST.float()[None])
    rays = rays_from_pixels(cams, torch.zeros(n, dtype=torch.long), u, v, 0.1, 10.0)
    # OpenCV y points down, ours up; OpenCV looks down +z, ours down -z
    d_cam = torch.nn.functional.normalize(torch.stack([x_ideal, -y_ideal, -torch.ones(n)], -1), dim=-1)
    assert torch.allclose(rays.directions, d_cam @ rot.T, atol=2e-5)
    # without distortion the same pixels would look elsewhere: the test has teeth
    plain = rays_from_pixels(Cameras(c2w=c2w[None], fx=full(fx), fy=full(fy), cx=full(cx), cy=full(cy),
                                     width=320, height=240), torch.zeros(n, dtype=torch.long), u, v, 0.1, 10.0)
    assert (plain.directions - d_cam @ rot.T).norm(dim=-1).max() > 1e-2
