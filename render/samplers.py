"""Where to sample along rays: stratified bins and hierarchical (inverse-CDF) bins.

Samples are *intervals*: a sampler returns bin edges `t` of shape (n_rays, n_samples + 1); the
field is queried at bin midpoints and compositing uses the bin lengths, so the rendered opacity
of a medium is exact for piecewise-constant density and nothing past `far` is counted.
"""
from __future__ import annotations

import torch


def stratified_edges(near: torch.Tensor, far: torch.Tensor, n_samples: int, jitter: bool,
                     lindisp: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bin edges (n_rays, n_samples + 1) evenly spaced in depth (or disparity) between near and far.

    With `jitter`, each interior edge moves uniformly within its neighbours' midpoints (one random
    offset per edge), so every sample point stays inside its stratum and training sees all depths.
    """
    u = torch.linspace(0.0, 1.0, n_samples + 1, device=near.device, dtype=near.dtype)
    u = u.expand(near.shape[0], n_samples + 1)
    if jitter:
        mids = 0.5 * (u[:, 1:] + u[:, :-1])
        lower = torch.cat([u[:, :1], mids], -1)
        upper = torch.cat([mids, u[:, -1:]], -1)
        r = torch.rand(u.shape, device=u.device, dtype=u.dtype, generator=generator)
        u = lower + (upper - lower) * r
    if lindisp:
        return 1.0 / (1.0 / near * (1.0 - u) + 1.0 / far * u)
    return near * (1.0 - u) + far * u


def midpoints(edges: torch.Tensor) -> torch.Tensor:
    """(n_rays, n + 1) edges -> (n_rays, n) sample positions."""
    return 0.5 * (edges[..., 1:] + edges[..., :-1])


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, n_samples: int, deterministic: bool,
               eps: float = 1e-5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverse-CDF samples (n_rays, n_samples) from the piecewise-constant pdf `weights` over `edges`.

    edges: (n_rays, n_bins + 1); weights: (n_rays, n_bins). `eps` keeps rays with all-zero
    weights sampling uniformly instead of dividing by zero. Gradients do not flow through.
    """
    weights = weights.detach() + eps
    pdf = weights / weights.sum(-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, -1)], -1).clamp_max(1.0)
    n_rays = edges.shape[0]
    if deterministic:
        u = torch.linspace(0.0, 1.0, n_samples, device=edges.device, dtype=edges.dtype).expand(n_rays, n_samples)
    else:
        u = torch.rand(n_rays, n_samples, device=edges.device, dtype=edges.dtype, generator=generator)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.detach().contiguous(), u, right=True)
    below = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    above = idx.clamp(0, cdf.shape[-1] - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, below), cdf.gather(-1, above)
    t_lo, t_hi = edges.gather(-1, below), edges.gather(-1, above)
    denom = cdf_hi - cdf_lo
    frac = torch.where(denom < 1e-12, torch.zeros_like(denom), (u - cdf_lo) / denom.clamp_min(1e-12))
    return (t_lo + frac * (t_hi - t_lo)).detach()


def merge_edges(edges: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
    """Union of existing bin edges and new sample depths, sorted: (n_rays, n + 1 + m)."""
    return torch.sort(torch.cat([edges, extra], -1), dim=-1).values
