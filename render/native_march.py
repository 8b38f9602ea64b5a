"""`OccupancyGrid.candidates` by the C kernels of `march_kernels.c` on the CPU: each ray stepped
in one pass, the same steps listed as the torch code lists them (ray-major, front to back), none
of the per-step arrays the torch code writes. `candidates` returns None where the kernels do not
apply (another device, native kernels off or not built); the grid then runs its torch code."""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from nerf.render import native

_SOURCE = Path(__file__).with_name("march_kernels.c")
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_ORDER_CODE = {None: 0.0, 2.0: 2.0, float("inf"): 3.0}
ROOM = 1 << 24  # the most steps one call makes room for (12 bytes each)


def _library() -> ctypes.CDLL | None:
    lib = native.load(_SOURCE)
    if lib is not None and lib.march_list.argtypes is None:
        lib.march_list.argtypes = [_I64] + [_P] * 12 + [_INT]
        lib.march_list.restype = _INT
    return lib


def candidates(grid, origins: torch.Tensor, dirs: torch.Tensor, s_in: torch.Tensor, counts: torch.Tensor,
               offset: torch.Tensor, k_lo: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Midpoints t (m,) and ray_idx (m,) of the occupied steps k_lo <= k < counts[i] of each ray
    that starts its steps at (warped) distance s_in (n,) with sub-step `offset` (n,)."""
    if origins.device.type != "cpu" or grid.occupied.device.type != "cpu" or grid.res ** 3 >= 1 << 31:
        return None  # (the kernel's cell indices are 32-bit)
    lib = _library()
    if lib is None:
        return None
    n = origins.shape[0]
    if n == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.long)
    room = (counts - k_lo).clamp_min(0)  # the steps each ray may have: the output makes room for all
    if n > 1 and int(room.sum()) > ROOM:  # in parts, so the room stays a few hundred MB at most
        h = n // 2
        a = candidates(grid, origins[:h], dirs[:h], s_in[:h], counts[:h], offset[:h], k_lo)
        b = candidates(grid, origins[h:], dirs[h:], s_in[h:], counts[h:], offset[h:], k_lo)
        return torch.cat([a[0], b[0]]), torch.cat([a[1], b[1] + h])
    o_ax, d_ax, shift, scale = grid.ray_axes(origins.float(), dirs.float())
    stride = grid._stride()
    coarse, rc = grid.coarse_level()
    fparams = torch.tensor([grid.step, grid.knee, float(grid.power), _ORDER_CODE[grid.order], *shift, *scale],
                           dtype=torch.float32)
    iparams = torch.tensor([grid.res, rc, grid.COARSE, stride, int(k_lo)], dtype=torch.int64)
    arrays = [o_ax.contiguous(), d_ax.contiguous(), s_in.float().contiguous(), counts.long().contiguous(),
              offset.float().contiguous(), grid.occupied.contiguous().view(torch.uint8),
              coarse.contiguous().view(torch.uint8), fparams, iparams]
    threads = torch.get_num_threads()
    room = int(room.sum())
    t, ray_idx = torch.empty(room), torch.empty(room, dtype=torch.int64)
    spans = torch.zeros(2 * max(threads, 1), dtype=torch.int64)
    parts = lib.march_list(n, *[native.ptr(a) for a in arrays], native.ptr(t), native.ptr(ray_idx), native.ptr(spans),
                           threads)
    spans = spans[:2 * parts].view(-1, 2).tolist()
    if len(spans) == 1:
        return t[:spans[0][1]], ray_idx[:spans[0][1]]
    return (torch.cat([t[a:a + m] for a, m in spans]), torch.cat([ray_idx[a:a + m] for a, m in spans]))
