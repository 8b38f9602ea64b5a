"""One optimisation step, shared by the trainer and Reptile's inner loop."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from nerf.models.base import TRAIN
from nerf.render.rays import RayBundle


@dataclass
class StepResult:
    loss: float  # the summed loss
    losses: dict[str, float]  # each named term, as weighted by the model
    metrics: dict[str, float]  # what the model reports (psnr, ...)
    outputs: dict  # the model's outputs for the batch (several shards: opacity and samples_per_ray over all)
    finite: bool  # False: a non-finite loss or gradient, and the update was skipped


def optimisation_step(model, optimizer: torch.optim.Optimizer, rays: RayBundle, target: torch.Tensor,
                      generator: torch.Generator | None) -> StepResult:
    """Render `rays` in training mode, sum the model's named losses against `target` (n, 3),
    backpropagate and update, unless the loss or a gradient is non-finite (then nothing moves)."""
    return sharded_step(model, optimizer, [(rays, target, generator, 1.0)])


def sharded_step(model, optimizer: torch.optim.Optimizer,
                 shards: list[tuple[RayBundle, torch.Tensor, torch.Generator | None, float]],
                 reduce_gradients: Callable[[bool], bool] | None = None) -> StepResult:
    """One update from a batch drawn in shards (rays, target, generator, weight): each shard's
    loss, times its weight (its share of the global batch), is backpropagated in turn, so the
    gradients add up to those of the whole batch while only one shard's samples are in memory.
    `reduce_gradients(finite)` then sums them with other processes' shards (distributed.py) and
    says whether every rank's were finite; the update is skipped everywhere if not."""
    optimizer.zero_grad(set_to_none=True)
    finite, parts = True, []
    for rays, target, generator, weight in shards:
        out = model(rays, mode=TRAIN, generator=generator)
        losses, metrics = model.loss(out, target)
        error = (out["rgb"].detach() - target).pow(2).mean(-1)  # per ray, for an error map
        out["ray_error"] = error if "ray_mask" not in out else torch.where(out["ray_mask"], error, -1.0)
        loss = sum(losses.values())
        ok = bool(torch.isfinite(loss))
        if ok and finite:  # later shards still draw their random numbers, so the streams stay in step
            (loss if weight == 1.0 else loss * weight).backward()
        finite = finite and ok
        if len(shards) > 1:  # keep what the result needs, not each shard's samples
            out = {"opacity": out["opacity"].detach(), "samples_per_ray": out["samples_per_ray"],
                   "ray_error": out["ray_error"]}
        parts.append((weight, out, float(loss.detach()), {k: float(v.detach()) for k, v in losses.items()}, metrics))
    if reduce_gradients is not None:
        finite = reduce_gradients(finite)
    if finite:
        finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    if len(parts) == 1:
        _, out, loss, losses, metrics = parts[0]
        return StepResult(loss, losses, metrics, out, finite)
    total = sum(p[0] for p in parts)

    def mean(get):  # over the shards, each by its share of the batch
        return sum(p[0] * get(p) for p in parts) / total

    outputs = {"opacity": torch.cat([p[1]["opacity"] for p in parts]),
               "ray_error": torch.cat([p[1]["ray_error"] for p in parts]),
               "samples_per_ray": mean(lambda p: p[1]["samples_per_ray"])}
    return StepResult(mean(lambda p: p[2]), {k: mean(lambda p: p[3][k]) for k in parts[0][3]},
                      {k: mean(lambda p: p[4][k]) for k in parts[0][4]}, outputs, finite)
