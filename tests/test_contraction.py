"""Scene contraction (render/contraction.py, mip-NeRF 360)."""
import math

import pytest
import torch

from nerf.render.contraction import contract, contract_to_unit_cube, uncontract


@pytest.mark.parametrize("order", [2, math.inf])
def test_identity_inside_and_bounded_outside(order):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.logspace(-2, 4, 2000, dtype=torch.float64)[:, None]
    y = contract(x, order)
    norm = lambda v: v.norm(dim=-1) if order == 2 else v.abs().amax(-1)  # noqa: E731
    inside = norm(x) <= 1
    assert torch.equal(y[inside], x[inside])
    assert torch.all(norm(y) < 2)
    assert torch.all(norm(y[~inside]) > 1)
    # directions from the origin are kept
    assert torch.allclose(torch.nn.functional.normalize(y, dim=-1), torch.nn.functional.normalize(x, dim=-1))
    # the inverse undoes it
    assert torch.allclose(uncontract(y, order), x, rtol=1e-6)


def test_values_and_infinity():
    x = torch.tensor([[0.5, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, -1e12]], dtype=torch.float64)
    y = contract(x)
    expect = torch.tensor([[0.5, 0, 0], [1.5, 0, 0], [0, 1.75, 0], [0, 0, -2.0]], dtype=torch.float64)
    assert torch.allclose(y, expect, atol=1e-9)


def test_continuous_with_continuous_derivative_at_the_unit_sphere():
    d = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64), dim=0)
    for r in (1 - 1e-6, 1 + 1e-6):
        x = (d * r).requires_grad_(True)
        y = contract(x[None])[0]
        assert torch.allclose(y, d * r, atol=3e-6)
        jac = torch.autograd.functional.jacobian(lambda v: contract(v[None])[0], x.detach())
        assert torch.allclose(jac, torch.eye(3, dtype=torch.float64), atol=1e-4)


def test_monotone_along_rays_and_finite_gradients():
    o = torch.tensor([0.2, 0.1, -0.3])
    d = torch.nn.functional.normalize(torch.tensor([1.0, 2.0, 0.5]), dim=0)
    t = torch.logspace(-3, 5, 400)
    pts = (o + t[:, None] * d).requires_grad_(True)
    y = contract(pts)
    r = y.norm(dim=-1)
    assert torch.all(r[1:] >= r[:-1] - 1e-6)
    y.sum().backward()
    assert torch.isfinite(pts.grad).all()
    z = torch.zeros(1, 3, requires_grad=True)
    contract(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_unit_cube_coordinates():
    x = torch.tensor([[0.0, 0.0, 0.0], [1e9, -1e9, 0.0]])
    u = contract_to_unit_cube(x, order=math.inf)
    assert torch.allclose(u[0], torch.full((3,), 0.5))
    assert torch.allclose(u[1], torch.tensor([1.0, 0.0, 0.5]), atol=1e-6)
