"""Camera rays in the OpenGL/Blender convention.

A camera looks down its local -z axis with x to the right and y up. Pixel (row i, column j) has
its centre at (j + 0.5, i + 0.5); its ray direction in camera space is
((j + 0.5 - cx) / fx, -(i + 0.5 - cy) / fy, -1), normalised to unit length, so the ray
parameter t is the Euclidean distance from the camera centre.

Cameras are passed as any object with c2w (n, 4, 4), fx, fy, cx, cy (n,), width, height and an
optional distortion: lens rows (n, 4) or (n, 7), OpenCV radial-tangential or fisheye per camera
(see `render.distortion`), e.g. `datasets.Cameras`; this module does not import datasets.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class RayBundle:
    """origins, directions: (n_rays, 3), directions unit length; near, far: (n_rays, 1).

    viewdirs: optional (n_rays, 3) unit world-space viewing directions for rays whose
    `directions` are not (NDC rays: samples are o + t d in NDC, but colour depends on the
    direction in the world); None means `directions` is the viewing direction. Models read it
    through `view_directions`. cam_idx: optional (n_rays,) index of the training image each
    ray comes from (per-image appearance codes, camera refinement); None for renders.
    background: optional (n_rays, 3) colour each ray is composited over (training with random
    backgrounds); None: the model's own background. depth_target: optional (n_rays,) distance
    along the ray to a scene point the capture's structure from motion saw there (NaN for rays
    with none), for a sparse depth loss; None: no ray has one.
    """

    origins: torch.Tensor
    directions: torch.Tensor
    near: torch.Tensor
    far: torch.Tensor
    viewdirs: torch.Tensor | None = None
    cam_idx: torch.Tensor | None = None
    background: torch.Tensor | None = None
    depth_target: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.origins.shape[0]

    @property
    def view_directions(self) -> torch.Tensor:
        """(n_rays, 3) unit viewing directions in world space."""
        return self.directions if self.viewdirs is None else self.viewdirs

    def __getitem__(self, sl) -> "RayBundle":
        return RayBundle(*(None if getattr(self, f.name) is None else getattr(self, f.name)[sl] for f in fields(self)))

    def to(self, device) -> "RayBundle":
        return RayBundle(*(None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                           for f in fields(self)))


def pixel_directions(x: torch.Tensor, y: torch.Tensor, fx, fy, cx, cy) -> torch.Tensor:
    """Unnormalised camera-space directions (n, 3) for pixel coordinates x, y (n,) (centres at +0.5)."""
    return torch.stack([(x - cx) / fx, -(y - cy) / fy, -torch.ones_like(x)], dim=-1)


def rays_from_pixels(cameras, cam_idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                     near: float, far: float) -> RayBundle:
    """Rays through continuous pixel coordinates (x, y) of the cameras `cam_idx` (all (n,)).

    Pass integer pixel indices + 0.5 for pixel centres.
    """
    if getattr(cameras, "distortion", None) is not None:
        from nerf.render.distortion import camera_directions

        d_cam = camera_directions(x, y, cameras.fx[cam_idx], cameras.fy[cam_idx], cameras.cx[cam_idx],
                                  cameras.cy[cam_idx], cameras.distortion[cam_idx])
    else:
        d_cam = pixel_directions(x, y, cameras.fx[cam_idx], cameras.fy[cam_idx],
                                 cameras.cx[cam_idx], cameras.cy[cam_idx])
    c2w = cameras.c2w[cam_idx]
    d_world = torch.einsum("nij,nj->ni", c2w[:, :3, :3], d_cam)
    d_world = torch.nn.functional.normalize(d_world, dim=-1)
    origins = c2w[:, :3, 3].expand_as(d_world).contiguous()
    n = origins.shape[0]
    return RayBundle(
        origins=origins, directions=d_world,
        near=torch.full((n, 1), float(near), dtype=origins.dtype, device=origins.device),
        far=torch.full((n, 1), float(far), dtype=origins.dtype, device=origins.device),
    )


def pixel_grid(height: int, width: int, scale: float = 1.0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates x, y (n,) of an image resized by `scale`, row-major.

    Pixel n of the (height*scale, width*scale) image is row n // W, column n % W; coordinates are
    in the original image's pixel units, so `scale` = 2 gives 4 rays per pixel (supersampling).
    """
    h, w = int(round(height * scale)), int(round(width * scale))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return (xs.reshape(-1) + 0.5) / scale, (ys.reshape(-1) + 0.5) / scale


def image_rays(cameras, index: int, near: float, far: float, scale: float = 1.0) -> RayBundle:
    """All rays of camera `index` over the pixel grid of `pixel_grid` (see there for `scale`)."""
    x, y = pixel_grid(cameras.height, cameras.width, scale, cameras.c2w.device)
    idx = torch.full_like(x, index, dtype=torch.long)
    return rays_from_pixels(cameras, idx, x, y, near, far)
