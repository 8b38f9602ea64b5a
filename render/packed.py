"""Volume rendering of packed samples: flat arrays plus a ray index, no padding.

A packed batch holds m samples of n_rays rays: `ray_idx` (m,) long, sorted ascending, and the
samples of one ray in increasing depth, each an interval [t_start, t_end]. A ray may own no
samples at all. Compositing is the same math as `render.composite` (same alpha, same clamped
log-transmittance), done with an exclusive segment cumsum and segment sums (`index_add`), so the
two agree on the same samples (tests/test_packed.py checks 1e-5).
"""
from __future__ import annotations

import torch

from nerf.render.composite import alpha_from_density


def segment_starts(ray_idx: torch.Tensor, n_rays: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per ray: sample count (n_rays,) and index of its first sample (n_rays,) in the packed arrays."""
    counts = torch.bincount(ray_idx, minlength=n_rays)
    return counts, torch.cumsum(counts, 0) - counts


def exclusive_segment_cumsum(values: torch.Tensor, ray_idx: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """sum of `values` over the earlier samples of the same ray, (m,).

    One global cumsum minus its value at each ray's first sample; accumulated in float64 so
    a long batch loses no precision. Differentiable."""
    if values.numel() == 0:
        return values
    c = torch.cumsum(values.double(), 0)
    excl = c - values.double()
    return (excl - excl.index_select(0, starts.index_select(0, ray_idx))).to(values.dtype)


def tau_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """Optical depth -log(1 - alpha), clamped exactly as `render.composite.weights_from_alpha`."""
    return -torch.log1p(-alpha.clamp(max=1.0 - 1e-7))


def segment_sum(values: torch.Tensor, ray_idx: torch.Tensor, n_rays: int) -> torch.Tensor:
    """Sum per ray of (m, ...) values -> (n_rays, ...); rays without samples get 0."""
    out = torch.zeros((n_rays,) + values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_add(0, ray_idx, values)


def composite_packed(sigma: torch.Tensor, rgb: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor,
                     ray_idx: torch.Tensor, n_rays: int, background: torch.Tensor | None,
                     far: torch.Tensor | float) -> dict[str, torch.Tensor]:
    """Render n_rays rays from packed samples.

    sigma (m,), rgb (m, 3), t_starts/t_ends (m,), ray_idx (m,) sorted; background (3,) or
    (n_rays, 3) or None (black); far (n_rays, 1) or a float: the depth reported where nothing
    is seen. Returns rgb (n_rays, 3), opacity (n_rays, 1), depth (n_rays, 1) (normalised by
    opacity as in `render.composite`), expected_depth (n_rays, 1) and weights (m,).
    """
    _, starts = segment_starts(ray_idx, n_rays)
    alpha = alpha_from_density(sigma, t_ends - t_starts)
    trans = torch.exp(-exclusive_segment_cumsum(tau_from_alpha(alpha), ray_idx, starts))
    weights = alpha * trans
    opacity = segment_sum(weights, ray_idx, n_rays)[:, None]
    colour = segment_sum(weights[:, None] * rgb, ray_idx, n_rays)
    if background is not None:
        colour = colour + (1.0 - opacity) * background
    expected = segment_sum(weights * 0.5 * (t_starts + t_ends), ray_idx, n_rays)[:, None]
    if not torch.is_tensor(far):
        far = torch.full_like(opacity, float(far))
    depth = torch.where(opacity > 1e-4, expected / opacity.clamp_min(1e-10), far)
    return {"rgb": colour, "opacity": opacity, "depth": depth, "expected_depth": expected, "weights": weights}


def distortion_loss(weights: torch.Tensor, t_starts: torch.Tensor, t_ends: torch.Tensor, ray_idx: torch.Tensor,
                    n_rays: int) -> torch.Tensor:
    """mip-NeRF 360's distortion loss per ray (n_rays,), from packed samples in O(m):

        sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (t_end_i - t_start_i),  m = interval midpoints

    It is small when a ray's weight sits in one short stretch (a surface) and large when it is
    spread along the ray (fog). With samples sorted by depth, the double sum is
    2 sum_i w_i (m_i W_i - S_i), W_i and S_i the sums of w and w * m over the earlier samples."""
    _, starts = segment_starts(ray_idx, n_rays)
    mid = 0.5 * (t_starts + t_ends)
    w_before = exclusive_segment_cumsum(weights, ray_idx, starts)
    wm_before = exclusive_segment_cumsum(weights * mid, ray_idx, starts)
    per_sample = 2.0 * weights * (mid * w_before - wm_before) + weights.square() * (t_ends - t_starts) / 3.0
    return segment_sum(per_sample, ray_idx, n_rays)


def pack_dense(edges: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The samples `keep` (n_rays, n) of dense bins `edges` (n_rays, n + 1) as packed
    (t_starts, t_ends, ray_idx); flat index order keeps rays sorted and depths increasing."""
    ray_idx, col = keep.nonzero(as_tuple=True)
    return edges[ray_idx, col], edges[ray_idx, col + 1], ray_idx
