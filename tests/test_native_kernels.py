"""The C kernels (render/native.py): the same values as the torch code they stand in for, used
only where no gradient is wanted, and a machine that cannot build them keeps the torch code."""
from __future__ import annotations

import logging

import pytest
import torch

from nerf.fields import native_grids
from nerf.fields.grids import DenseGrid, TensoRFVM
from nerf.render import native

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


def test_gradients_take_the_torch_code(built):
    enc = TensoRFVM(BOX, 16, 4)
    x = torch.rand(100, 3)
    enc(x).square().sum().backward()  # the kernel has no backward: training must not reach it
    assert enc.planes.grad is not None and float(enc.planes.grad.abs().sum()) > 0
    with torch.no_grad():
        assert native_grids.tensorf_features(enc.planes, enc.lines, enc.box_lo, enc.box_size, x) is not None
    assert native_grids.tensorf_features(enc.planes, enc.lines, enc.box_lo, enc.box_size, x) is None


def test_switched_off_and_unbuildable(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("NERF_NATIVE", "0")
    assert native_grids._library() is None
    enc = TensoRFVM(BOX, 16, 4)
    with torch.no_grad():
        assert enc(torch.rand(10, 3)).shape == (10, 12)
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
