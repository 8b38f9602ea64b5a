"""The factorised and dense grids read at many points by the C kernels of `grid_kernels.c`, for
calls that need no gradient (renders, evaluation, occupancy refreshes) on the CPU. Each function
returns None where the kernel does not apply (gradients wanted, another device or dtype, native
kernels off or not built), and the caller runs its torch code, which computes the same features."""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from nerf.render import native

_SOURCE = Path(__file__).with_name("grid_kernels.c")
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def _library() -> ctypes.CDLL | None:
    lib = native.load(_SOURCE)
    if lib is not None and lib.tensorf_features.argtypes is None:
        lib.tensorf_features.argtypes = [_P, _I64, _P, _P, _INT, _INT, _P, _P, _P, _INT]
        lib.tensorf_features.restype = None
        lib.dense_features.argtypes = [_P, _I64, _P, _INT, _INT, _P, _P, _P, _INT]
        lib.dense_features.restype = None
    return lib


def _applies(x: torch.Tensor, *tables: torch.Tensor) -> bool:
    if x.device.type != "cpu" or x.dim() != 2 or x.shape[1] != 3:
        return False
    if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tables):
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in tables)))


def tensorf_features(planes: torch.Tensor, lines: torch.Tensor, box_lo: torch.Tensor, box_size: torch.Tensor,
                     x: torch.Tensor) -> torch.Tensor | None:
    """TensoRFVM's features (n, 3 * c) of points x (n, 3) from planes (3, r, r, c), lines (3, r, c)."""
    if not _applies(x, planes, lines):
        return None
    lib = _library()
    if lib is None:
        return None
    r, c = planes.shape[1], planes.shape[3]
    x = x.detach().float().contiguous()
    out = torch.empty(x.shape[0], 3 * c)
    planes, lines = planes.detach().contiguous(), lines.detach().contiguous()
    lo, size = box_lo.float().contiguous(), box_size.float().contiguous()
    lib.tensorf_features(native.ptr(x), x.shape[0], native.ptr(planes), native.ptr(lines), r, c,
                         native.ptr(lo), native.ptr(size), native.ptr(out), torch.get_num_threads())
    return out


def dense_features(grid: torch.Tensor, box_lo: torch.Tensor, box_size: torch.Tensor,
                   x: torch.Tensor) -> torch.Tensor | None:
    """DenseGrid's trilinear features (n, c) of points x (n, 3) from a grid (r, r, r, c) indexed (z, y, x)."""
    if not _applies(x, grid):
        return None
    lib = _library()
    if lib is None:
        return None
    r, c = grid.shape[0], grid.shape[3]
    x = x.detach().float().contiguous()
    out = torch.empty(x.shape[0], c)
    grid = grid.detach().contiguous()
    lo, size = box_lo.float().contiguous(), box_size.float().contiguous()
    lib.dense_features(native.ptr(x), x.shape[0], native.ptr(grid), r, c, native.ptr(lo), native.ptr(size),
                       native.ptr(out), torch.get_num_threads())
    return out
