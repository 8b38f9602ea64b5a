"""One optimisation step, shared by the trainer and Reptile's inner loop."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nerf.models.base import TRAIN
from nerf.render.rays import RayBundle


@dataclass
class StepResult:
    loss: float  # the summed loss
    losses: dict[str, float]  # each named term, as weighted by the model
    metrics: dict[str, float]  # what the model reports (psnr, ...)
    outputs: dict  # the model's outputs for the batch
    finite: bool  # False: a non-finite loss or gradient, and the update was skipped


def optimisation_step(model, optimizer: torch.optim.Optimizer, rays: RayBundle, target: torch.Tensor,
                      generator: torch.Generator | None) -> StepResult:
    """Render `rays` in training mode, sum the model's named losses against `target` (n, 3),
    backpropagate and update, unless the loss or a gradient is non-finite (then nothing moves)."""
    out = model(rays, mode=TRAIN, generator=generator)
    losses, metrics = model.loss(out, target)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    if finite:
        loss.backward()
        finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return StepResult(float(loss.detach()), {k: float(v.detach()) for k, v in losses.items()}, metrics, out, finite)
