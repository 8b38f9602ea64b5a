"""What every model offers the trainer, evaluator and video renderer."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from render.rays import RayBundle


@dataclass
class SceneInfo:
    """The facts about a scene a model needs, saved with the run so renders need no dataset:
    near/far ray bounds, the content's bounding box (2, 3), the background colour (3,) (None for
    scenes without alpha, rendered over black) and whether rays are in NDC."""

    near: float
    far: float
    bbox: list
    background: list | None
    ndc: bool = False

    @classmethod
    def from_scene(cls, scene, has_alpha: bool) -> "SceneInfo":
        return cls(near=float(scene.near), far=float(scene.far), bbox=scene.bbox.tolist(),
                   background=scene.background.tolist() if has_alpha else None, ndc=bool(scene.ndc))


class RenderModel(nn.Module):
    """A model renders a RayBundle into a dict with at least rgb (n, 3), depth (n, 1),
    opacity (n, 1) and samples_per_ray (a float), and scores its outputs against target pixels."""

    def __init__(self, cfg, info: SceneInfo):
        super().__init__()
        self.cfg, self.info = cfg, info
        bg = torch.tensor(info.background, dtype=torch.float32) if info.background is not None else None
        self.register_buffer("background", bg, persistent=False)
        # How far the learning rate has decayed (lr / train.lr, 1 at the start), set by the trainer
        # before each step, for regularisers that follow the schedule (model.fast.tv_decay).
        self.lr_decay = 1.0

    def forward(self, rays: RayBundle, jitter: bool, generator: torch.Generator | None = None) -> dict:
        raise NotImplementedError

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss and named scalars to log (e.g. per-stage PSNR)."""
        raise NotImplementedError

    def prepare(self, scene) -> None:
        """Hook to set up state from the training data before the first step of a fresh run
        (e.g. carving an occupancy grid from the silhouettes); nothing by default."""

    def before_step(self, step: int) -> bool:
        """Hook for per-step bookkeeping (e.g. refreshing an occupancy grid); nothing by default.
        Returns True when it changed the shape of parameters (the trainer then drops their
        optimiser state)."""
        return False

    def param_groups(self, lr: float) -> list[dict]:
        """Optimiser parameter groups; one group at the base rate by default."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr, "lr_scale": 1.0}]


def psnr_from_mse(mse: float) -> float:
    import math

    return -10.0 * math.log10(max(mse, 1e-12))
