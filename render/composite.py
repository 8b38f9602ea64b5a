"""Differentiable volume rendering of dense (n_rays, n_samples) samples.

For bins of length delta_i with density sigma_i: alpha_i = 1 - exp(-sigma_i * delta_i),
transmittance T_i = prod_{j<i} (1 - alpha_j), weight w_i = T_i * alpha_i. Then
rgb = sum w_i c_i + (1 - opacity) * background, opacity = sum w_i, and the expected depth is
sum w_i t_i (the mass that stops at t_i), with `depth` normalised by opacity for display and
metrics (the depth of what is seen) and disparity = 1 / depth.
"""
from __future__ import annotations

import torch


def alpha_from_density(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.exp(-sigma * deltas)


def weights_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """w_i = alpha_i * prod_{j<i}(1 - alpha_j), computed in log space for stability. (n_rays, n)."""
    log_trans = torch.cumsum(torch.log1p(-alpha.clamp(max=1.0 - 1e-7)), dim=-1)
    log_trans = torch.cat([torch.zeros_like(log_trans[:, :1]), log_trans[:, :-1]], dim=-1)
    return alpha * torch.exp(log_trans)


def composite(sigma: torch.Tensor, rgb: torch.Tensor, edges: torch.Tensor,
              background: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Render rays from samples.

    sigma: (n_rays, n) densities; rgb: (n_rays, n, 3) colours; edges: (n_rays, n + 1) bin edges
    (samples at midpoints); background: (3,) or (n_rays, 3) or None (black).
    Returns rgb (n_rays, 3), opacity (n_rays, 1), depth (n_rays, 1) (expected depth of the
    visible surface, far where nothing is seen), expected_depth (n_rays, 1) (sum w t, unnormalised),
    disparity (n_rays, 1) and weights (n_rays, n).
    """
    deltas = edges[:, 1:] - edges[:, :-1]
    t_mid = 0.5 * (edges[:, 1:] + edges[:, :-1])
    alpha = alpha_from_density(sigma, deltas)
    weights = weights_from_alpha(alpha)
    opacity = weights.sum(-1, keepdim=True)
    colour = (weights[..., None] * rgb).sum(-2)
    if background is not None:
        colour = colour + (1.0 - opacity) * background
    expected = (weights * t_mid).sum(-1, keepdim=True)
    far = edges[:, -1:]
    depth = torch.where(opacity > 1e-4, expected / opacity.clamp_min(1e-10), far)
    return {
        "rgb": colour, "opacity": opacity, "depth": depth, "expected_depth": expected,
        "disparity": 1.0 / depth.clamp_min(1e-10), "weights": weights,
    }
