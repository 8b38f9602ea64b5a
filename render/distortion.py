"""OpenCV radial-tangential lens distortion (k1, k2, p1, p2): the forward model and its inverse.

In normalised image coordinates (x, y) = ((u - cx) / fx, (v - cy) / fy) (OpenCV axes: x right,
y down), with r^2 = x^2 + y^2, a real lens moves an ideal point to

    x_d = x (1 + k1 r^2 + k2 r^4) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y (1 + k1 r^2 + k2 r^4) + p1 (r^2 + 2 y^2) + 2 p2 x y

A pixel of a distorted photo therefore sees along the ray of the *undistorted* point, which
`undistort_points` finds by Newton's method on the 2x2 system (a handful of iterations reach
float precision for the distortions of real lenses).
"""
from __future__ import annotations

import torch


def distort_normalized(x: torch.Tensor, y: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward model: ideal normalised coordinates x, y (n,) -> distorted; dist (n, 4) or (4,)."""
    k1, k2, p1, p2 = dist.unbind(-1)
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + k2 * r2)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort_normalized(xd: torch.Tensor, yd: torch.Tensor, dist: torch.Tensor,
                         iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert `distort_normalized` by Newton's method (computed in float64)."""
    dtype = xd.dtype
    xd, yd, dist = xd.double(), yd.double(), dist.double()
    k1, k2, p1, p2 = dist.unbind(-1)
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + k2 * r2)
        dr = k1 + 2.0 * k2 * r2  # d radial / d r^2
        fx = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) - xd
        fy = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y - yd
        j_xx = radial + 2.0 * x * x * dr + 2.0 * p1 * y + 6.0 * p2 * x
        j_xy = 2.0 * x * y * dr + 2.0 * p1 * x + 2.0 * p2 * y
        j_yx = j_xy
        j_yy = radial + 2.0 * y * y * dr + 6.0 * p1 * y + 2.0 * p2 * x
        det = j_xx * j_yy - j_xy * j_yx
        det = torch.where(det.abs() < 1e-12, torch.full_like(det, 1e-12), det)
        x = x - (fx * j_yy - fy * j_xy) / det
        y = y - (fy * j_xx - fx * j_yx) / det
    return x.to(dtype), y.to(dtype)


def undistort_points(x: torch.Tensor, y: torch.Tensor, fx, fy, cx, cy,
                     dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates x, y (n,) of a distorted image -> the ideal pinhole pixel coordinates whose
    rays they see. fx, fy, cx, cy: (n,) or floats; dist: (n, 4) k1, k2, p1, p2."""
    xn, yn = undistort_normalized((x - cx) / fx, (y - cy) / fy, dist)
    return xn * fx + cx, yn * fy + cy
