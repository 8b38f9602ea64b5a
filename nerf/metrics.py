"""Image quality figures, defined once: PSNR (from an MSE or from two images) and SSIM (kornia)."""
from __future__ import annotations

import math

import torch


def psnr_from_mse(mse: float) -> float:
    """Peak signal-to-noise ratio in dB of a mean squared error on [0, 1] images (capped at 120 dB)."""
    return -10.0 * math.log10(max(float(mse), 1e-12))


def psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR of `pred` against `gt` (same shape, [0, 1]); `pred` is clamped to [0, 1] first, as a
    saved image would be."""
    return psnr_from_mse(torch.mean((pred.float().clamp(0, 1) - gt.float()) ** 2).item())


def ssim(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean SSIM (11x11 Gaussian window) of (H, W, 3) images in [0, 1]."""
    from kornia.metrics import ssim as kornia_ssim

    a = pred.float().clamp(0, 1).permute(2, 0, 1)[None]
    b = gt.float().permute(2, 0, 1)[None]
    return float(kornia_ssim(a, b, window_size=11).mean())
