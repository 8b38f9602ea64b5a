"""The typed scene every loader produces: images, cameras, bounds and background of one split.

Conventions (stated once here, relied on everywhere):
- poses are camera-to-world 4x4 matrices in the OpenGL/Blender convention: x right, y up,
  the camera looks down -z;
- pixel (row i, column j) has its centre at (j + 0.5, i + 0.5) in pixel coordinates;
- images are float32 RGB in [0, 1], already composited onto `background` where the format has alpha.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from nerf.datasets.errors import DatasetError


@dataclass
class Cameras:
    """Pinhole cameras of one split.

    c2w: (n, 4, 4) camera-to-world; fx, fy, cx, cy: (n,) intrinsics in pixels;
    width, height: image size shared by the split; distortion: optional (n, 4) OpenCV
    radial-tangential coefficients (k1, k2, p1, p2) or None for an ideal pinhole.
    """

    c2w: torch.Tensor
    fx: torch.Tensor
    fy: torch.Tensor
    cx: torch.Tensor
    cy: torch.Tensor
    width: int
    height: int
    distortion: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, idx) -> "Cameras":
        """A subset of the cameras (an int keeps the leading dimension)."""
        if isinstance(idx, int):
            idx = [idx]
        return Cameras(
            c2w=self.c2w[idx], fx=self.fx[idx], fy=self.fy[idx], cx=self.cx[idx], cy=self.cy[idx],
            width=self.width, height=self.height,
            distortion=None if self.distortion is None else self.distortion[idx],
        )

    def scaled(self, factor: float) -> "Cameras":
        """The same cameras for images resized by `factor` (0.5 = half width and height)."""
        return replace(
            self, fx=self.fx * factor, fy=self.fy * factor, cx=self.cx * factor, cy=self.cy * factor,
            width=int(round(self.width * factor)), height=int(round(self.height * factor)),
        )

    def to(self, device) -> "Cameras":
        return replace(
            self, c2w=self.c2w.to(device), fx=self.fx.to(device), fy=self.fy.to(device),
            cx=self.cx.to(device), cy=self.cy.to(device),
            distortion=None if self.distortion is None else self.distortion.to(device),
        )


@dataclass
class Scene:
    """One split of a posed-image scene.

    images: (n, H, W, 3) float32 in [0, 1]; alpha: optional (n, H, W) coverage for formats that
    have it; depth: optional (n, H, W) true ray distance along the unit view direction (inf where
    nothing is hit), only the built-in scene knows it; near/far: ray bounds in world units;
    bbox: (2, 3) axis-aligned box holding the content; background: (3,) RGB behind the content.
    `ndc` marks forward-facing scenes whose rays are warped to normalised device coordinates.
    mask: optional (n, H, W) per-pixel weights in [0, 1] from the capture (1 = use the pixel,
    0 = ignore it, e.g. a moving person), for formats that ship masks.
    sparse_depth: optional (m, 4) rows (view, x, y, distance): a pixel position (continuous, centres
    at +0.5) of view `view` where the capture's structure from motion saw a scene point, and the
    point's distance from that view's camera along the ray through it (COLMAP models).
    """

    name: str
    split: str
    images: torch.Tensor
    cameras: Cameras
    near: float
    far: float
    bbox: torch.Tensor
    background: torch.Tensor
    alpha: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    image_names: list[str] = field(default_factory=list)
    ndc: bool = False
    mask: torch.Tensor | None = None
    metadata: dict = field(default_factory=dict)
    sparse_depth: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def height(self) -> int:
        return self.cameras.height

    @property
    def width(self) -> int:
        return self.cameras.width

    def subset(self, idx: list[int]) -> "Scene":
        """The views `idx` of this split, in that order."""
        return replace(
            self, images=self.images[idx], cameras=self.cameras[idx],
            alpha=None if self.alpha is None else self.alpha[idx],
            depth=None if self.depth is None else self.depth[idx],
            mask=None if self.mask is None else self.mask[idx],
            image_names=[self.image_names[i] for i in idx] if self.image_names else [],
            sparse_depth=_sparse_depth_subset(self.sparse_depth, idx, len(self)),
        )


def _sparse_depth_subset(rows: torch.Tensor | None, idx: list[int], n_views: int) -> torch.Tensor | None:
    """The sparse depth rows of views `idx`, renumbered to their places in `idx`."""
    if rows is None:
        return None
    place = torch.full((n_views,), -1, dtype=torch.long)
    place[torch.as_tensor(idx, dtype=torch.long)] = torch.arange(len(idx))
    new = place[rows[:, 0].long()]
    keep = new >= 0
    if not bool(keep.any()):
        return None
    out = rows[keep].clone()
    out[:, 0] = new[keep].float()
    return out


def select_views(n_total: int, opts, source) -> tuple[list[int], int]:
    """The indices into range(n_total) that `opts` (DataOptions) asks for, and how many views the
    split has before the block: data.max_images of them evenly spaced, then the block
    data.view_offset, data.view_count of those. An offset past the end is a DatasetError naming
    `source`. Loaders record the count as metadata['views_in_split']."""
    keep = evenly_spaced(n_total, opts.max_images)
    if opts.view_offset >= len(keep):
        raise DatasetError(f"{source}: data.view_offset={opts.view_offset} is past the {len(keep)} views selected")
    stop = opts.view_offset + opts.view_count if opts.view_count else None
    return keep[opts.view_offset:stop], len(keep)


def evenly_spaced(n_total: int, n_keep: int) -> list[int]:
    """`n_keep` indices spread evenly over range(n_total), first and last included (all if n_keep <= 0)."""
    if n_keep <= 0 or n_keep >= n_total:
        return list(range(n_total))
    if n_keep == 1:
        return [0]
    return [round(i * (n_total - 1) / (n_keep - 1)) for i in range(n_keep)]
