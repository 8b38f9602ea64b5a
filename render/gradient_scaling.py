"""Gradient scaling near the cameras, against floaters in front of them (Philip and Deschaintre,
"Floaters No More: Radiance Field Gradient Scaling for Improved Near-Camera Training", 2023;
our own code).

A point close to a camera covers many pixels of that camera's photo and few of any other's, so
with uniform gradients the field learns to explain one photo with a blob right in front of its
camera (a floater), which every other view then sees as fog. Scaling the gradient a sample sends
to its density and colour by min(1, (t / distance)^2), t its distance along the ray, evens this
out: the gradient a region receives per unit of its volume stops growing as the camera nears.
The forward pass is unchanged: only what training learns from near samples shrinks.
"""
from __future__ import annotations

import torch


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(scale)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (scale,) = ctx.saved_tensors
        return grad * scale.reshape(scale.shape + (1,) * (grad.dim() - scale.dim())), None


def near_camera_scale(t: torch.Tensor, distance: float) -> torch.Tensor:
    """The gradient factor (m,) of samples at ray distances t (m,): (t / distance)^2, at most 1."""
    return (t / distance).square().clamp_max(1.0)


def scale_gradient(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x unchanged, its gradient multiplied by `scale` (x.shape[:scale.dim()]) on the way back."""
    return _ScaleGradient.apply(x, scale.detach().to(x.dtype))
