"""Camera refinement for real captures (nerfacto's camera optimiser, our own code): a small SE(3)
correction per training image, learned with the field, so poses that structure from motion got
slightly wrong stop blurring the scene.

A correction is a rotation vector w (axis times angle) and a shift v, applied in the world frame
about the camera's own centre: the refined camera-to-world has rotation exp(w) R and centre
c + v. Rays of image i are turned and moved the same way, so training sees them through the
refined camera. The corrections start at zero and are saved with the model.

Only the corrections' differences act: their mean over the images is taken out before use. A
turn or shift common to every camera changes nothing the photos can tell (the scene can move with
the cameras), yet it would carry the training cameras away from the held-out ones, which keep
their given poses, and every held-out view would be scored through a misplaced camera.
"""
from __future__ import annotations

import torch
from torch import nn

from nerf.render.rotations import so3_exp


class CameraRefinement(nn.Module):
    """Per-image corrections (n_images, 6): rotation vector, then shift."""

    def __init__(self, n_images: int):
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(n_images, 6))

    def corrections(self) -> torch.Tensor:
        """(n_images, 6) with their mean taken out (see the module docstring)."""
        return self.delta - self.delta.mean(0, keepdim=True)

    def apply(self, origins: torch.Tensor, dirs: torch.Tensor, cam_idx: torch.Tensor):
        """Rays (n, 3) of training images `cam_idx` (n,) through the refined cameras."""
        d = self.corrections()[cam_idx]
        rot = so3_exp(d[:, :3])
        return origins + d[:, 3:], torch.einsum("nij,nj->ni", rot, dirs)

    @torch.no_grad()
    def refined(self, c2w: torch.Tensor) -> torch.Tensor:
        """Refined camera-to-world matrices (n_images, 4, 4) of the training cameras `c2w`."""
        out = c2w.clone()
        d = self.corrections().to(c2w.dtype)
        out[:, :3, :3] = so3_exp(d[:, :3]) @ c2w[:, :3, :3]
        out[:, :3, 3] = c2w[:, :3, 3] + d[:, 3:]
        return out
