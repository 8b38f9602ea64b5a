"""Evaluate a ray-rendering function in fixed-size chunks so memory is bounded at any image size."""
from __future__ import annotations

from typing import Callable

import torch

from render.rays import RayBundle


def render_chunks(fn: Callable[[RayBundle], dict[str, torch.Tensor]], rays: RayBundle, chunk: int,
                  keys: tuple[str, ...] = ("rgb", "depth", "opacity"),
                  out_device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Run `fn` on `chunk` rays at a time and concatenate the per-ray outputs named `keys`.

    Outputs are moved to `out_device` per chunk, so device memory holds one chunk at a time.
    """
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, len(rays), chunk):
        out = fn(rays[start:start + chunk])
        for k in keys:
            parts[k].append(out[k].detach().to(out_device))
    return {k: torch.cat(v, 0) for k, v in parts.items()}
