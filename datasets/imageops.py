"""Image file reading, alpha compositing and area-averaged downscaling.

Downscaling averages *premultiplied* colour so that a pixel half covered by a red object on a
transparent background becomes half-transparent red, not pink: colour is divided by the averaged
alpha only when compositing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nerf.datasets.errors import DatasetError


def check_image_file(path: Path) -> None:
    """A one-line error if `path` is not an existing file (also for names no filesystem accepts)."""
    try:
        exists = path.is_file()
    except (OSError, ValueError):  # e.g. a NUL byte or an over-long name in a listed path
        exists = False
    if not exists:
        raise DatasetError(f"{path}: image file not found")


def unreadable(path: Path, exc: Exception) -> DatasetError:
    """The one-line error for an image file that exists but does not decode."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatasetError(f"{path}: cannot read image ({first})")


def read_image(path: Path) -> np.ndarray:
    """An image file as float32 (H, W, C) in [0, 1], C = 3 or 4; a one-line error if unreadable."""
    import imageio.v3 as iio

    check_image_file(path)
    try:
        img = iio.imread(path)
    except Exception as exc:  # imageio raises many types for corrupt files
        raise unreadable(path, exc) from None
    if img.ndim == 2:
        img = img[..., None].repeat(3, axis=-1)
    if img.ndim != 3 or img.shape[-1] not in (1, 3, 4):
        raise DatasetError(f"{path}: unsupported image shape {img.shape}")
    if img.shape[-1] == 1:
        img = img.repeat(3, axis=-1)
    scale = 65535.0 if img.dtype == np.uint16 else 255.0 if img.dtype == np.uint8 else 1.0
    return img.astype(np.float32) / scale


def downscale_area(img: torch.Tensor, factor: int) -> torch.Tensor:
    """Area-average (..., H, W, C) by an integer factor; H and W are cropped to multiples of it.

    Colour channels of RGBA input are premultiplied by alpha before averaging and left
    premultiplied: composite with `composite_premultiplied`.
    """
    if factor == 1:
        return img
    h, w = img.shape[-3] // factor * factor, img.shape[-2] // factor * factor
    img = img[..., :h, :w, :]
    lead = img.shape[:-3]
    c = img.shape[-1]
    x = img.reshape(*lead, h // factor, factor, w // factor, factor, c)
    return x.mean(dim=(-4, -2))


def premultiply(rgba: torch.Tensor) -> torch.Tensor:
    """(..., 4) straight-alpha RGBA to premultiplied."""
    return torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], dim=-1)


def composite_premultiplied(rgba: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """(..., 4) premultiplied RGBA over a (3,) background colour -> (..., 3)."""
    return rgba[..., :3] + (1.0 - rgba[..., 3:]) * background


def composite_stack_(rgb: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Premultiplied RGB (n, H, W, 3) with alpha (n, H, W) over a (3,) background, in place and
    one image at a time: a split of 800x800 views needs no second (n, H, W, 4) copy. Returns `rgb`."""
    for k in range(rgb.shape[0]):
        rgb[k] += (1.0 - alpha[k, ..., None]) * background
    return rgb


def load_rgba_stack(paths: list[Path], factor: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Read, check and downscale a list of images of one split into preallocated tensors.

    Returns premultiplied RGB (n, H, W, 3) and alpha (n, H, W) (None if the files have no alpha);
    only one full-resolution image is held at a time. Every image must have the size of the
    first; the error names the one that differs.
    """
    rgb = alpha = None
    first_shape = None
    for k, p in enumerate(paths):
        img = read_image(p)
        if first_shape is None:
            first_shape = img.shape[:2]
        elif img.shape[:2] != first_shape:
            raise DatasetError(
                f"{p}: image size {img.shape[1]}x{img.shape[0]} differs from the split's "
                f"{first_shape[1]}x{first_shape[0]} ({paths[0].name})"
            )
        t = torch.from_numpy(img)
        if t.shape[-1] == 4:
            t = premultiply(t)
        t = downscale_area(t, factor)
        if rgb is None:
            h, w = t.shape[:2]
            rgb = torch.empty(len(paths), h, w, 3)
            if t.shape[-1] == 4:
                alpha = torch.empty(len(paths), h, w)
        rgb[k] = t[..., :3]
        if alpha is not None:
            alpha[k] = t[..., 3] if t.shape[-1] == 4 else 1.0
    return rgb, alpha
