"""Rotations from rotation vectors (axis times angle): the exponential map of SO(3), with
gradients, for camera corrections and for perturbing poses."""
from __future__ import annotations

import torch


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (n, 3, 3) of rotation vectors w (n, 3) (Rodrigues), with finite
    gradients at w = 0 (the small-angle series below 1e-4 rad)."""
    theta2 = (w * w).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-24).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)  # sin t / t
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-24))  # (1 - cos t) / t^2
    zero = torch.zeros_like(w[:, 0])
    k = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)
