"""Lens models of real cameras: OpenCV radial-tangential and OpenCV fisheye (equidistant), each
with its forward model and its inverse, and the camera-space ray of a pixel of a distorted photo.

A camera's lens is one row of coefficients (`Cameras.distortion`, (n, 4) or (n, 7)):

    (k1, k2, p1, p2)                          OpenCV radial-tangential, k3 = 0 (the short form)
    (k1, k2, p1, p2, k3, k4, fisheye)         the full row; `lens_rows` pads the short form

fisheye = 0: OpenCV radial-tangential (COLMAP's OPENCV, nerfstudio's OPENCV). In normalised image
coordinates (x, y) = ((u - cx) / fx, (v - cy) / fy) (OpenCV axes: x right, y down), with
r^2 = x^2 + y^2, a real lens moves an ideal point to

    x_d = x (1 + k1 r^2 + k2 r^4 + k3 r^6) + 2 p1 x y + p2 (r^2 + 2 x^2)
    y_d = y (1 + k1 r^2 + k2 r^4 + k3 r^6) + p1 (r^2 + 2 y^2) + 2 p2 x y

(k4 must be 0: OpenCV's k4 is a rational term, nerfstudio's an r^8 one, and no format we read
writes either). A pixel of a distorted photo sees along the ray of the *undistorted* point, which
`undistort_normalized` finds by Newton's method on the 2x2 system.

fisheye = 1: OpenCV fisheye (COLMAP's and nerfstudio's OPENCV_FISHEYE, instant-ngp's
`is_fisheye`), equidistant with a polynomial in the angle theta between the ray and the optical
axis (p1 = p2 = 0):

    theta_d = theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8),
    (x_d, y_d) = theta_d * (unit direction of the ray's projection on the image plane)

so the distance of a pixel from the principal point, in focal lengths, is theta_d. The inverse
(`fisheye_undistort_angle`) is Newton's method on that scalar equation; the ray is built from
theta directly, so fields of view at and beyond 180 degrees stay finite.
"""
from __future__ import annotations

import math

import torch

LENS_COLUMNS = ("k1", "k2", "p1", "p2", "k3", "k4", "fisheye")
LENS_WIDTH = len(LENS_COLUMNS)


def lens_rows(dist: torch.Tensor) -> torch.Tensor:
    """Lens rows (..., 4..7) padded with zeros to the full row (..., 7) (see the module docstring)."""
    if dist.shape[-1] > LENS_WIDTH or dist.shape[-1] < 4:
        raise ValueError(f"lens rows have 4 to {LENS_WIDTH} columns, got {dist.shape[-1]}")
    pad = LENS_WIDTH - dist.shape[-1]
    return torch.nn.functional.pad(dist, (0, pad)) if pad else dist


def _coeffs(dist: torch.Tensor):
    d = lens_rows(dist)
    return d[..., 0], d[..., 1], d[..., 2], d[..., 3], d[..., 4], d[..., 5]


# ---------------------------------------------------------------------- OpenCV radial-tangential

def distort_normalized(x: torch.Tensor, y: torch.Tensor, dist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward model: ideal normalised coordinates x, y (n,) -> distorted; dist (n, 4..7) or (4..7,)."""
    k1, k2, p1, p2, k3, _ = _coeffs(dist)
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort_normalized(xd: torch.Tensor, yd: torch.Tensor, dist: torch.Tensor,
                         iterations: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Invert `distort_normalized` by Newton's method (computed in float64)."""
    dtype = xd.dtype
    xd, yd = xd.double(), yd.double()
    k1, k2, p1, p2, k3, _ = (c.double() for c in _coeffs(dist))
    x, y = xd.clone(), yd.clone()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dr = k1 + r2 * (2.0 * k2 + 3.0 * k3 * r2)  # d radial / d r^2
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
    """Pixel coordinates x, y (n,) of a radial-tangential distorted image -> the ideal pinhole pixel
    coordinates whose rays they see. fx, fy, cx, cy: (n,) or floats; dist: (n, 4..7) lens rows."""
    xn, yn = undistort_normalized((x - cx) / fx, (y - cy) / fy, dist)
    return xn * fx + cx, yn * fy + cy


# ------------------------------------------------------------------------------ OpenCV fisheye

def fisheye_distort_angle(theta: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """theta_d (n,) for ray angles theta (n,) from the optical axis; dist (n, 7) or (7,) lens rows."""
    k1, k2, _, _, k3, k4 = _coeffs(dist)
    t2 = theta * theta
    return theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))


def fisheye_undistort_angle(theta_d: torch.Tensor, dist: torch.Tensor, iterations: int = 20) -> torch.Tensor:
    """Invert `fisheye_distort_angle` by Newton's method (float64), theta kept in [0, pi]."""
    dtype = theta_d.dtype
    theta_d = theta_d.double()
    k1, k2, _, _, k3, k4 = (c.double() for c in _coeffs(dist))
    theta = theta_d.clone()
    for _ in range(iterations):
        t2 = theta * theta
        f = theta * (1.0 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4)))) - theta_d
        df = 1.0 + t2 * (3.0 * k1 + t2 * (5.0 * k2 + t2 * (7.0 * k3 + t2 * 9.0 * k4)))
        df = torch.where(df.abs() < 1e-12, torch.full_like(df, 1e-12), df)
        theta = (theta - f / df).clamp(0.0, torch.pi)
    return theta.to(dtype)


def lens_focal(fov_degrees: float, span: float, fisheye: bool) -> float:
    """Focal length in pixels of a lens whose field of view across `span` pixels (an image's
    width, say) is `fov_degrees`: a perspective lens puts a ray at angle theta off its axis
    f tan(theta) from the principal point, an equidistant fisheye f theta."""
    half = math.radians(fov_degrees) / 2
    return (span / 2) / (half if fisheye else math.tan(half))


# ------------------------------------------------------------------------------------ rays

def camera_directions(x: torch.Tensor, y: torch.Tensor, fx, fy, cx, cy, dist: torch.Tensor) -> torch.Tensor:
    """Camera-space directions (n, 3) in the OpenGL convention (x right, y up, looking down -z), not
    unit length, of pixel coordinates x, y (n,) (centres at +0.5) of distorted photos.

    fx, fy, cx, cy: (n,) or floats; dist: (n, 4..7) lens rows, one model per row. Radial-tangential
    rows give (x_u, -y_u, -1) for the undistorted normalised point; fisheye rows give
    (sin theta u_x, -sin theta u_y, -cos theta) for the ray angle theta and the unit image-plane
    direction u of the pixel.
    """
    rows = lens_rows(dist.to(x.dtype))
    fish = rows[..., 6] > 0.5
    xd, yd = (x - cx) / fx, (y - cy) / fy
    xu, yu = undistort_normalized(xd, yd, torch.where(fish[..., None], torch.zeros_like(rows), rows))
    out = torch.stack([xu, -yu, -torch.ones_like(xu)], dim=-1)
    if bool(fish.any()):
        rd = torch.sqrt(xd.double() ** 2 + yd.double() ** 2)
        theta = fisheye_undistort_angle(rd, rows).double()
        # sin(theta) / r_d -> 1 / (1 + k1 ...) -> 1 at the centre, where both vanish
        s = torch.where(rd > 1e-12, torch.sin(theta) / rd.clamp_min(1e-12), torch.ones_like(rd))
        f_dir = torch.stack([s * xd.double(), -s * yd.double(), -torch.cos(theta)], dim=-1).to(x.dtype)
        out = torch.where(fish[..., None], f_dir, out)
    return out
