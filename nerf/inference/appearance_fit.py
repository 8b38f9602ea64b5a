"""Scoring a model with per-image appearance codes fairly (nerfstudio's and NeRF-W's protocol): a
held-out photo has no code of its own, so the mean code renders it; to see how much of the rest
is exposure, a code is also fitted on the photo's left half, with the field frozen, and both codes
are scored on its right half."""
from __future__ import annotations

import torch

from nerf.metrics import psnr
from nerf.models.base import TRAIN
from nerf.scene_rays import pixel_rays


def fit_half_code(model, cams, index: int, info, image: torch.Tensor, steps: int = 64, rays_per_step: int = 2048,
                  lr: float = 0.05, seed: int = 0) -> torch.Tensor:
    """A code (appearance_dim,) fitted to the left half of `image` (H, W, 3) seen by camera
    `index`, from the mean code, with every other parameter frozen."""
    h, w = image.shape[:2]
    dev = cams.c2w.device
    gen = torch.Generator(device=dev).manual_seed(seed)
    code = model.appearance.weight.detach().mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    frozen = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.eval()
    for p in frozen:
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            x = torch.randint(0, w // 2, (rays_per_step,), generator=gen, device=dev)
            y = torch.randint(0, h, (rays_per_step,), generator=gen, device=dev)
            rays = pixel_rays(cams, torch.full_like(x, index), x.float() + 0.5, y.float() + 0.5, info)
            model.code_override = code
            out = model(rays, mode=TRAIN, jitter=False)
            loss = torch.nn.functional.mse_loss(out["rgb"], image.to(dev)[y, x])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        model.code_override = None
        for p in frozen:
            p.requires_grad_(True)
        model.train(was_training)
    return code.detach()


def right_half_psnr(model, render_fn, image: torch.Tensor, code: torch.Tensor | None) -> float:
    """PSNR on the right half of `image` of `render_fn()` (a full view's outputs) with `code`."""
    model.code_override = code
    try:
        rgb = render_fn()["rgb"].cpu()
    finally:
        model.code_override = None
    w = image.shape[1]
    return psnr(rgb[:, w // 2:], image[:, w // 2:])
