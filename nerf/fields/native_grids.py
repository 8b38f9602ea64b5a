"""The factorised and dense grids read at many points by the C kernels of `grid_kernels.c` on the
CPU: their features, and in training the gradient of their entries (an autograd function whose
backward is one C pass). Each function returns None where the kernels do not apply (another
device or dtype, points that need a gradient themselves, as under camera refinement, native
kernels off or not built), and the caller runs its torch code, which computes the same values."""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from nerf.render import native

_SOURCE = Path(__file__).with_name("grid_kernels.c")
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
MAX_CHANNELS = 256  # MAX_C of grid_kernels.c: components per factor the kernels take
_SIGNATURES = {
    "tensorf_features": [_P, _I64, _P, _P, _INT, _INT, _P, _P, _P, _INT],
    "dense_features": [_P, _I64, _P, _INT, _INT, _P, _P, _P, _INT],
    "tensorf_backward": [_P, _I64, _P, _P, _P, _INT, _INT, _P, _P, _P, _P, _INT],
    "dense_backward": [_P, _I64, _P, _INT, _INT, _P, _P, _P, _INT],
}


def _library() -> ctypes.CDLL | None:
    lib = native.load(_SOURCE)
    if lib is not None and lib.tensorf_features.argtypes is None:
        for name, args in _SIGNATURES.items():
            getattr(lib, name).argtypes, getattr(lib, name).restype = args, None
    return lib


def _applies(x: torch.Tensor, *tables: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dim() != 2 or x.shape[1] != 3:
        return False
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tables):
        return False
    return not (x.requires_grad and torch.is_grad_enabled())


def _wants_grad(*tables: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tables)


def _flat(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().float().contiguous() for t in tensors]


def _tensorf(planes, lines, x, lo, size) -> torch.Tensor:
    r, c = planes.shape[1], planes.shape[3]
    out = torch.empty(x.shape[0], 3 * c)
    _library().tensorf_features(native.ptr(x), x.shape[0], native.ptr(planes), native.ptr(lines), r, c,
                                native.ptr(lo), native.ptr(size), native.ptr(out), torch.get_num_threads())
    return out


def _dense(grid, x, lo, size) -> torch.Tensor:
    r, c = grid.shape[0], grid.shape[3]
    out = torch.empty(x.shape[0], c)
    _library().dense_features(native.ptr(x), x.shape[0], native.ptr(grid), r, c, native.ptr(lo), native.ptr(size),
                              native.ptr(out), torch.get_num_threads())
    return out


class _TensoRF(torch.autograd.Function):
    @staticmethod
    def forward(ctx, planes, lines, x, lo, size):
        planes, lines, x, lo, size = _flat(planes, lines, x, lo, size)
        ctx.save_for_backward(planes, lines, x, lo, size)
        ctx.lib = _library()  # the backward's kernels, whatever NERF_NATIVE says by then
        return _tensorf(planes, lines, x, lo, size)

    @staticmethod
    def backward(ctx, grad):
        planes, lines, x, lo, size = ctx.saved_tensors
        grad = grad.float().contiguous()
        g_planes, g_lines = torch.zeros_like(planes), torch.zeros_like(lines)
        ctx.lib.tensorf_backward(native.ptr(x), x.shape[0], native.ptr(grad), native.ptr(planes), native.ptr(lines),
                                    planes.shape[1], planes.shape[3], native.ptr(lo), native.ptr(size),
                                    native.ptr(g_planes), native.ptr(g_lines), torch.get_num_threads())
        return g_planes, g_lines, None, None, None


class _Dense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grid, x, lo, size):
        grid, x, lo, size = _flat(grid, x, lo, size)
        ctx.save_for_backward(x, lo, size)
        ctx.grid_shape, ctx.lib = grid.shape, _library()
        return _dense(grid, x, lo, size)

    @staticmethod
    def backward(ctx, grad):
        x, lo, size = ctx.saved_tensors
        grad = grad.float().contiguous()
        g_grid = torch.zeros(ctx.grid_shape)
        r, c = ctx.grid_shape[0], ctx.grid_shape[3]
        ctx.lib.dense_backward(native.ptr(x), x.shape[0], native.ptr(grad), r, c, native.ptr(lo), native.ptr(size),
                                  native.ptr(g_grid), torch.get_num_threads())
        return g_grid, None, None, None


def tensorf_features(planes: torch.Tensor, lines: torch.Tensor, box_lo: torch.Tensor, box_size: torch.Tensor,
                     x: torch.Tensor) -> torch.Tensor | None:
    """TensoRFVM's features (n, 3 * c) of points x (n, 3) from planes (3, r, r, c), lines (3, r, c),
    differentiable in the planes and lines when they need a gradient."""
    if not _applies(x, planes, lines) or planes.shape[3] > MAX_CHANNELS or _library() is None:
        return None
    if _wants_grad(planes, lines):
        return _TensoRF.apply(planes, lines, x, box_lo, box_size)
    return _tensorf(*_flat(planes, lines, x, box_lo, box_size))


def dense_features(grid: torch.Tensor, box_lo: torch.Tensor, box_size: torch.Tensor,
                   x: torch.Tensor) -> torch.Tensor | None:
    """DenseGrid's trilinear features (n, c) of points x (n, 3) from a grid (r, r, r, c) indexed
    (z, y, x), differentiable in the grid when it needs a gradient."""
    if not _applies(x, grid) or _library() is None:
        return None
    if _wants_grad(grid):
        return _Dense.apply(grid, x, box_lo, box_size)
    return _dense(*_flat(grid, x, box_lo, box_size))
