"""Where the field is still wrong: a per-image map of the recent training error, to draw rays from.

With few passes over the pixels (a large image set, a short budget), uniform rays spend most of
the batch on pixels the field already renders right, a plain background above all. instant-ngp
keeps a coarse map of each image's recent error and draws training pixels in proportion to it;
here a share of every batch (`train.error_sampling`) is drawn that way and the rest uniformly,
so no pixel is starved. Unvisited cells start at the highest error (1), so every cell is
visited early; a cell's first visit sets its error, later ones average into it. Off by default:
on lego at equal cost it did no better than a smaller batch
(benchmarks/results/error-map-sampling-2026-12-06.md).
"""
from __future__ import annotations

import math

import torch

from nerf.errors import UserError

MAX_CELLS = 2**24  # torch.multinomial's limit on categories


class ErrorMap:
    """The mean squared colour error of recent rays over cells of `cell` x `cell` pixels of each
    of `n` images of h x w pixels, as an exponential moving average (`decay` per visit)."""

    def __init__(self, n: int, h: int, w: int, cell: int, device, decay: float = 0.8):
        self.h, self.w, self.cell, self.decay = h, w, max(1, cell), decay
        self.gh, self.gw = math.ceil(h / self.cell), math.ceil(w / self.cell)
        self.error = torch.ones(n * self.gh * self.gw, device=device)  # squared errors are below 1
        self.visited = torch.zeros(n * self.gh * self.gw, dtype=torch.bool, device=device)

    @classmethod
    def for_images(cls, images: torch.Tensor, cells_across: int) -> "ErrorMap":
        """A map of about `cells_across` cells along each image's longer side."""
        n, h, w = images.shape[:3]
        em = cls(n, h, w, max(1, round(max(h, w) / cells_across)), images.device)
        if em.error.numel() > MAX_CELLS:
            raise UserError(f"train.error_map_cells: {cells_across} gives {em.error.numel()} cells over {n} images, "
                            f"more than the {MAX_CELLS} a draw can take; use fewer")
        return em

    def sample(self, m: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Camera index, integer x and y of `m` pixels, each cell drawn in proportion to its error
        and the pixel uniformly inside it."""
        idx = torch.multinomial(self.error + 1e-12, m, replacement=True, generator=generator)
        cells = self.gh * self.gw
        cam, cy, cx = idx // cells, (idx // self.gw) % self.gh, idx % self.gw
        u = torch.rand(2, m, generator=generator, device=idx.device)
        y0, x0 = cy * self.cell, cx * self.cell
        y = y0 + (u[0] * (self.h - y0).clamp(max=self.cell)).long()  # edge cells may be cut by the image
        x = x0 + (u[1] * (self.w - x0).clamp(max=self.cell)).long()
        return cam, x, y

    def update(self, cam: torch.Tensor, x: torch.Tensor, y: torch.Tensor, error: torch.Tensor) -> None:
        """Fold the squared errors (m,) of rays through pixels (cam, x, y) into their cells;
        negative entries (rays that took no part) are skipped."""
        ok = error >= 0
        cell = (cam * (self.gh * self.gw) + torch.div(y.long(), self.cell, rounding_mode="floor") * self.gw
                + torch.div(x.long(), self.cell, rounding_mode="floor"))[ok]
        sums = torch.zeros_like(self.error).index_add_(0, cell, error[ok].to(self.error.dtype))
        counts = torch.zeros_like(self.error).index_add_(0, cell, torch.ones(cell.numel(), device=cell.device))
        seen = counts.nonzero()[:, 0]
        mean = sums[seen] / counts[seen]
        old = self.error[seen]
        self.error[seen] = torch.where(self.visited[seen], self.decay * old + (1 - self.decay) * mean, mean)
        self.visited[seen] = True
