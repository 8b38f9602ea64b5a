"""The model contract: what every method offers the trainer, the evaluator and the video renderer.

A model is built from its own config (`model.<method>.*`), the scene's facts (`SceneInfo`) and
the run's numeric precision and seed. It renders a `RayBundle` in one of two explicit modes and
scores its outputs as named losses (summed by the trainer) and named metrics (logged as they
come); schedules reach it through the `before_step` hook. The trainer knows no method by name.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from nerf.render.rays import RayBundle
from nerf.scene_rays import SceneInfo

TRAIN, RENDER = "train", "render"  # forward() modes


@functools.lru_cache(maxsize=None)
def native_bf16(device_type: str) -> bool:
    """Whether this machine multiplies bf16 matrices in hardware: a CUDA GPU with bf16, or a CPU
    with AVX512-BF16 or AMX tiles. Elsewhere bf16 is emulated and slower than fp32."""
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device_type != "cpu":
        return False
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(c is not None and c() for c in checks)  # private probes: absent in a torch without them


class RenderModel(nn.Module):
    """A model renders a RayBundle into a dict with at least rgb (n, 3), depth (n, 1),
    opacity (n, 1) and samples_per_ray (a float), and scores its outputs against target pixels."""

    def __init__(self, info: SceneInfo, precision: str = "fp32", seed: int = 0):
        super().__init__()
        self.info, self.seed = info, seed
        self.precision = precision  # fp32, bf16, or auto: bf16 where the device has it natively
        bg = torch.tensor(info.background, dtype=torch.float32) if info.background is not None else None
        self.register_buffer("background", bg, persistent=False)

    def autocast(self, device_type: str):
        """bf16 autocast when the run asked for it (train.precision bf16, or auto on a device with
        native bf16: `native_bf16`), else a no-op context."""
        on = self.precision == "bf16" or (self.precision == "auto" and native_bf16(device_type))
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=on)

    def ray_background(self, rays: RayBundle) -> torch.Tensor | None:
        """The colour rays are composited over: their own (training with random backgrounds,
        train.random_background), else the scene's; None: black."""
        return rays.background if rays.background is not None else self.background

    def forward(self, rays: RayBundle, mode: str = RENDER, generator: torch.Generator | None = None,
                jitter: bool | None = None) -> dict:
        """mode "train": the outputs a loss needs, samples jittered (drawn from `generator`);
        mode "render": the fastest path to pixels (no gradients needed), samples at fixed
        offsets. `jitter` overrides the mode's choice of sample offsets (tests compare paths)."""
        raise NotImplementedError

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """Named loss terms, already weighted (the trainer sums them), and named metrics to log
        (e.g. psnr, per-stage PSNR, a regulariser's raw value)."""
        raise NotImplementedError

    def prepare(self, scene) -> None:
        """Hook to set up state from the training data before the first step of a fresh run
        (e.g. carving an occupancy grid from the silhouettes); nothing by default."""

    def before_step(self, step: int, lr_factor: float = 1.0, budget: float = 0.0) -> bool:
        """Hook before each training step: `lr_factor` is how far the learning-rate schedule has
        decayed (lr / train.lr), for regularisers that follow it; `budget` the share of a time
        budget spent (`schedules.budget_share`, 0 for a run scheduled in steps). Per-step bookkeeping (e.g.
        refreshing an occupancy grid) goes here. Returns True when it changed the shape of
        parameters (the trainer then drops their optimiser state)."""
        return False

    def depth_rays(self) -> int:
        """Rays per training batch to draw through the scene's sparse depth keypoints, whose
        `RayBundle.depth_target` the model's loss then uses; 0 (none) by default."""
        return 0

    def refined_cameras(self, c2w: torch.Tensor) -> torch.Tensor:
        """The training cameras (n_images, 4, 4) as the model has refined them; `c2w` itself
        (the same object) when the model does not refine poses."""
        return c2w

    def param_groups(self, lr: float) -> list[dict]:
        """Named optimiser parameter groups, each with its rate as a multiple (lr_scale) of the
        base rate; one group by default."""
        return [{"name": "all", "params": [p for p in self.parameters() if p.requires_grad], "lr": lr,
                 "lr_scale": 1.0}]
