"""Evaluate a ray-rendering function in fixed-size chunks so memory is bounded at any image size.

Rays are made per chunk too (by `make_rays(start, stop)`), so a 1920x1080 frame holds only its
outputs plus one chunk's rays and samples at a time.
"""
from __future__ import annotations

from typing import Callable

import torch

from nerf.render.rays import RayBundle


def render_chunks(fn: Callable[[RayBundle], dict[str, torch.Tensor]], n_rays: int,
                  make_rays: Callable[[int, int], RayBundle], chunk: int,
                  keys: tuple[str, ...] = ("rgb", "depth", "opacity"),
                  out_device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Run `fn` on rays [start, start + chunk) for start = 0, chunk, ... and gather `keys`.

    Outputs (n_rays, ...) are preallocated on `out_device` and filled chunk by chunk.
    """
    out: dict[str, torch.Tensor] = {}
    for start in range(0, n_rays, chunk):
        stop = min(start + chunk, n_rays)
        res = fn(make_rays(start, stop))
        for k in keys:
            v = res[k].detach()
            if k not in out:
                out[k] = torch.empty((n_rays, *v.shape[1:]), dtype=v.dtype, device=out_device)
            out[k][start:stop] = v.to(out_device)
    return out
