"""Scene contraction for unbounded scenes (mip-NeRF 360, Barron et al. 2022, eq. 10).

    contract(x) = x                              if ||x|| <= 1
                = (2 - 1 / ||x||) (x / ||x||)    otherwise

The unit ball is kept as it is and everything outside it is squeezed into the shell
1 < ||x|| < 2, distance being mapped like disparity, so a grid over the ball of radius 2 (or the
cube [-2, 2]^3) covers the whole world with resolution falling off as 1 / distance. The map is
continuous with a continuous first derivative at ||x|| = 1, and it is invertible.

`order=inf` uses the max-norm instead of the Euclidean norm (the contracted scene is then the
cube [-2, 2]^3, which fills an axis-aligned grid without wasted corners, as MERF and nerfstudio's
L-inf option do). Use it on scenes normalised so the cameras lie in the unit ball
(`datasets.normalize`). A grid model calls `contract_to_unit_cube` to get [0, 1]^3 coordinates.
"""
from __future__ import annotations

import math

import torch


def _norm(x: torch.Tensor, order: float) -> torch.Tensor:
    if order == 2:
        return torch.linalg.vector_norm(x, ord=2, dim=-1, keepdim=True)
    if order == math.inf:
        return x.abs().amax(dim=-1, keepdim=True)
    raise ValueError(f"contraction order must be 2 or inf, got {order!r}")


def contract(x: torch.Tensor, order: float = 2) -> torch.Tensor:
    """Points (..., 3) -> contracted points (..., 3) with norm < 2 (see the module docstring).

    Gradients are finite everywhere, including at the origin.
    """
    # one scale per point, (2 - 1/m) / m with m = max(||x||, 1): exactly 1 inside the ball, and
    # the clamp keeps 1/m and its gradient finite; cheaper than scaling x twice and choosing with
    # a `where`, and the marching of every ray pays it per step
    safe = _norm(x, order).clamp_min(1.0)
    return x * ((2.0 - safe.reciprocal()) / safe)


def uncontract(y: torch.Tensor, order: float = 2) -> torch.Tensor:
    """The inverse of `contract` for points (..., 3) with norm < 2."""
    mag = _norm(y, order)
    safe = mag.clamp(1.0, 2.0 - 1e-7)
    outside = y / (safe * (2.0 - safe))  # ||x|| = 1 / (2 - ||y||), x = y / ||y|| * ||x||
    return torch.where(mag <= 1.0, y, outside)


def contract_to_unit_cube(x: torch.Tensor, order: float = 2) -> torch.Tensor:
    """Contracted points rescaled from [-2, 2]^3 to [0, 1]^3, the usual grid coordinates."""
    return contract(x, order) * 0.25 + 0.5
