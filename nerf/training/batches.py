"""Training batches: random pixels (camera index, position in the pixel, colour) from all training images."""
from __future__ import annotations

import torch

from nerf.errors import UserError


def sample_batch(images: torch.Tensor, n_rays: int, generator: torch.Generator, crop: float = 1.0,
                 valid: torch.Tensor | None = None, jitter: bool = False, error_map=None, error_share: float = 0.0):
    """Random pixels from all images (n, H, W, 3): camera index, x, y (pixel centres, or points
    inside the pixels with `jitter`) and colours.

    `jitter`: x, y at a uniform random point inside the pixel instead of its centre (instant-ngp's
    training rays), so a ray's expected colour is the pixel's area average, which is what a photo
    or an anti-aliased render records: parts thinner than a pixel are learned as what they cover.
    `crop` < 1 restricts rows and columns to the central fraction (the Blender warm-up).
    `valid`: flat indices (cam * H * W + y * W + x) of the only pixels to draw from, e.g. those a
    capture's masks keep (nerfstudio's rule: masked-out pixels never reach the loss).
    `error_map` (training/error_map.py, without `valid` or crop): the first `error_share` of the
    rays are drawn where it says the error is high, the rest uniformly.
    """
    n, h, w = images.shape[:3]
    dev = images.device
    if valid is not None and crop >= 1:
        flat = valid[torch.randint(0, valid.numel(), (n_rays,), generator=generator, device=dev)].long()
        cam, y, x = flat // (h * w), (flat // w) % h, flat % w
        return (cam, *_in_pixel(x, y, generator, jitter), images[cam, y, x])
    dh, dw = (int(h * crop / 2), int(w * crop / 2)) if crop < 1 else (h // 2, w // 2)
    y0, y1 = (h // 2 - dh, h // 2 + dh) if crop < 1 else (0, h)
    x0, x1 = (w // 2 - dw, w // 2 + dw) if crop < 1 else (0, w)
    m = round(n_rays * error_share) if error_map is not None and crop >= 1 else 0
    cam = torch.randint(0, n, (n_rays - m,), generator=generator, device=dev)
    y = torch.randint(y0, y1, (n_rays - m,), generator=generator, device=dev)
    x = torch.randint(x0, x1, (n_rays - m,), generator=generator, device=dev)
    if m:
        cam_e, x_e, y_e = error_map.sample(m, generator)
        cam, x, y = torch.cat([cam_e, cam]), torch.cat([x_e, x]), torch.cat([y_e, y])
    return (cam, *_in_pixel(x, y, generator, jitter), images[cam, y, x])


def _in_pixel(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator, jitter: bool):
    """Continuous coordinates of integer pixels x, y: their centres, or random points inside them."""
    if not jitter:
        return x.float() + 0.5, y.float() + 0.5
    u = torch.rand(2, x.numel(), generator=generator, device=x.device)
    return x.float() + u[0], y.float() + u[1]


def over_random_background(target: torch.Tensor, alpha: torch.Tensor, background: torch.Tensor,
                           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Target pixels (n, 3) composited over `background` (3,) with their alpha (n,), re-composited
    over a random colour per pixel: the new targets (n, 3) and the colours (n, 3), which the rays
    are then composited over. Exact for premultiplied colour: c + (1 - a) * (new - old)."""
    colours = torch.rand(target.shape[0], 3, generator=generator, device=target.device)
    return target + (1.0 - alpha)[:, None] * (colours - background), colours


def masked_pixels(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flat indices of the pixels a mask (n, H, W) keeps (> 0.5); None when it keeps them all."""
    if mask is None:
        return None
    keep = mask.reshape(-1) > 0.5
    if bool(keep.all()):
        return None
    if not bool(keep.any()):
        raise UserError("data: the capture's masks exclude every pixel; nothing to train on")
    idx = keep.nonzero(as_tuple=True)[0]
    return idx.int() if keep.numel() < 2 ** 31 else idx
