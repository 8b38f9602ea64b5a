"""The C kernels (render/native.py): the same values and gradients as the torch code they stand in
for, the same marching steps, and a machine that cannot build them keeps the torch code."""
from __future__ import annotations

import logging

import pytest
import torch

from nerf.fields import native_grids
from nerf.fields.grids import DenseGrid, TensoRFVM
from nerf.render import native, native_march
from nerf.render.occupancy import OccupancyGrid

BOX = torch.tensor([[-1.5, -1.0, -1.2], [1.5, 1.1, 1.3]])


@pytest.fixture
def built():
    """The grid kernels' library, or a skip naming why this machine has none."""
    if native_grids._library() is None:
        pytest.skip("native kernels cannot be built here (no C compiler or NERF_NATIVE=0)")


def _torch_path(monkeypatch, enc, x):
    monkeypatch.setenv("NERF_NATIVE", "0")
    with torch.no_grad():
        out = enc(x)
    monkeypatch.setenv("NERF_NATIVE", "1")
    return out


@pytest.mark.parametrize("make", [lambda: TensoRFVM(BOX, 37, 16), lambda: DenseGrid(BOX, 29, 8)],
                         ids=["tensorf", "dense"])
def test_kernel_matches_torch_code(built, monkeypatch, make):
    torch.manual_seed(0)
    enc = make()
    x = torch.cat([torch.rand(20000, 3) * (BOX[1] - BOX[0]) + BOX[0], 3 * torch.randn(500, 3)])  # some outside
    with torch.no_grad():
        fast = enc(x)
    slow = _torch_path(monkeypatch, enc, x)
    assert fast.shape == slow.shape and fast.dtype == torch.float32
    assert float((fast - slow).abs().max()) < 1e-6 * float(slow.abs().max())
    # a grid vertex reads back exactly its stored value (the last vertex of every axis included)
    if isinstance(enc, DenseGrid):
        corner = BOX[1][None].clone()
        with torch.no_grad():
            assert torch.allclose(enc(corner)[0], enc.grid[-1, -1, -1], atol=1e-7)


@pytest.mark.parametrize("make", [lambda: TensoRFVM(BOX, 37, 16), lambda: DenseGrid(BOX, 29, 8)],
                         ids=["tensorf", "dense"])
def test_kernel_gradients_match_torch_code(built, monkeypatch, make):
    """Training through the kernels: the grid entries get the gradient the torch code gives them."""
    torch.manual_seed(1)
    enc = make()
    x = torch.cat([torch.rand(30000, 3) * (BOX[1] - BOX[0]) + BOX[0], 3 * torch.randn(200, 3)])
    weights = torch.randn(x.shape[0], enc.out_dim)
    grads = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("NERF_NATIVE", flag)
        enc.zero_grad()
        out = enc(x)
        assert (type(out.grad_fn).__name__ in ("_TensoRFBackward", "_DenseBackward")) == (flag == "1")
        (out * weights).sum().backward()
        grads[flag] = [p.grad.clone() for p in enc.parameters()]
    for fast, slow in zip(grads["1"], grads["0"]):
        assert float(slow.abs().max()) > 0.1
        assert float((fast - slow).abs().max()) < 1e-5 * float(slow.abs().max())


def test_points_that_need_a_gradient_take_the_torch_code(built):
    """Camera refinement differentiates the sample positions: the kernels have no such gradient."""
    enc = TensoRFVM(BOX, 16, 4)
    x = torch.rand(100, 3, requires_grad=True)
    assert native_grids.tensorf_features(enc.planes, enc.lines, enc.box_lo, enc.box_size, x) is None
    enc(x).square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_switched_off_and_unbuildable(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NERF_NATIVE", "0")
    assert native_grids._library() is None
    enc = TensoRFVM(BOX, 16, 4)
    with torch.no_grad():
        assert enc(torch.rand(10, 3)).shape == (10, 12)
    monkeypatch.setenv("NERF_NATIVE", "1")  # switched back on: the kernels again, where they can be built
    assert (native_grids._library() is None) == (native._compiler() is None)
    # a compiler that fails: one warning naming the source, then the torch code
    monkeypatch.setenv("NERF_NATIVE", "1")
    monkeypatch.setenv("NERF_NATIVE_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "cc"))
    (tmp_path / "cc").write_text("#!/bin/sh\necho 'cc: broken' >&2\nexit 1\n")
    (tmp_path / "cc").chmod(0o755)
    source = tmp_path / "kernel.c"
    source.write_text("int f(void) { return 1; }\n")
    with caplog.at_level(logging.WARNING, logger="nerf.render.native"):
        assert native.load(source) is None
    assert "kernel.c" in caplog.text and "cc failed" in caplog.text
    assert list(tmp_path.glob("*.so")) == []  # nothing half-built left behind


def test_built_once_per_source(built, monkeypatch, tmp_path):
    monkeypatch.setenv("NERF_NATIVE_CACHE", str(tmp_path))
    source = tmp_path / "answer.c"
    source.write_text("int answer(void) { return 42; }\n")
    lib = native.load(source)
    if lib is None:
        pytest.skip("no C compiler")
    assert lib.answer() == 42
    assert len(list(tmp_path.glob("answer-*.so"))) == 1
    assert native.load(source) is lib


def _grid_and_rays(contraction: str, growth: str, seed: int = 4):
    gen = torch.Generator().manual_seed(seed)
    if contraction == "none":
        g = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), res=64, step=2 * 3 ** 0.5 / 300)
    else:
        g = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 64, 0.004, contraction=contraction, radius=0.5, knee=0.5,
                          centre=(0.1, -0.05, 0.02), growth=growth)
    g.restrict(torch.rand(64 ** 3, generator=gen) < 0.08)
    n = 3000
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    o = torch.rand(n, 3, generator=gen) * 0.4 - 0.2 - (2.5 * d if contraction == "none" else 0.0)
    near, far = torch.full((n, 1), 0.02), torch.full((n, 1), 30.0 if contraction != "none" else 6.0)
    return g, o, d, near, far, torch.rand(n, generator=gen)


@pytest.mark.parametrize("contraction,growth", [("none", "linear"), ("linf", "linear"), ("l2", "quadratic")])
def test_march_kernel_lists_the_torch_codes_steps(built, monkeypatch, contraction, growth):
    """The C listing of occupied steps against the torch code, whole rays and windows of steps."""
    g, o, d, near, far, offset = _grid_and_rays(contraction, growth)
    assert native_march._library() is not None
    for k_lo, k_hi in ((0, None), (0, 40), (40, 120)):
        fast = g.candidates(o, d, near, far, offset, k_lo, k_hi)
        monkeypatch.setenv("NERF_NATIVE", "0")
        slow = g.candidates(o, d, near, far, offset, k_lo, k_hi)
        monkeypatch.setenv("NERF_NATIVE", "1")
        assert slow[1].numel() > 5000
        # the same steps, up to a rare step on a cell's face that float rounding puts on its other side
        assert abs(fast[1].numel() - slow[1].numel()) <= 2
        if fast[1].numel() == slow[1].numel():
            assert torch.equal(fast[1], slow[1])
            assert torch.allclose(fast[0], slow[0], rtol=1e-5, atol=1e-5)
        assert fast[0].dtype == torch.float32 and fast[1].dtype == torch.int64


def test_march_kernel_in_parts_lists_the_same_steps(built, monkeypatch):
    """Rays whose steps would need more room than one call makes are listed in parts, joined in order."""
    g, o, d, near, far, offset = _grid_and_rays("l2", "quadratic", seed=6)
    whole = g.candidates(o, d, near, far, offset)
    monkeypatch.setattr(native_march, "ROOM", 5000)
    parts = g.candidates(o, d, near, far, offset)
    assert torch.equal(whole[1], parts[1]) and torch.equal(whole[0], parts[0])
