"""A scene as a model sees it: the facts a model needs (`SceneInfo`) and the rays of its cameras,
warped to NDC for forward-facing scenes.

The one place where training, evaluation and video turn cameras into rays.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nerf.render.rays import RayBundle, rays_from_pixels

FILE_BOXES = ("aabb", "aabb_scale")  # metadata['box_source'] of a box the capture file states


@dataclass
class SceneInfo:
    """The facts about a scene a model needs, saved with the run so renders need no dataset:
    near/far ray bounds, the content's bounding box (2, 3), the background colour (3,) (None for
    scenes without alpha, rendered over black), whether rays are in NDC and how many training
    images there are (per-image parameters: appearance codes, camera corrections), and the box
    (2, 3) around the training cameras' centres (scene contraction keeps them uncontracted; None
    in runs saved before it was recorded); box_from_file: the content box is the one the capture
    file states (instant-ngp's aabb_scale, an aabb), not one found from points or frusta (False
    in runs saved before it was recorded); pixel_size: how wide a training pixel is at the content
    box's centre, in scene units (the median over the training cameras of distance / focal
    length), for a marching step matched to the images' resolution (None in runs saved before it
    was recorded)."""

    near: float
    far: float
    bbox: list
    background: list | None
    ndc: bool = False
    n_images: int = 0
    camera_box: list | None = None
    box_from_file: bool = False
    pixel_size: float | None = None

    @classmethod
    def from_scene(cls, scene, has_alpha: bool) -> "SceneInfo":
        centres = scene.cameras.c2w[:, :3, 3].float()
        return cls(near=float(scene.near), far=float(scene.far), bbox=scene.bbox.tolist(),
                   background=scene.background.tolist() if has_alpha else None, ndc=bool(scene.ndc),
                   n_images=int(scene.cameras.c2w.shape[0]),
                   camera_box=torch.stack([centres.amin(0), centres.amax(0)]).tolist(),
                   box_from_file=(getattr(scene, "metadata", None) or {}).get("box_source") in FILE_BOXES,
                   pixel_size=pixel_size(scene.cameras, scene.bbox))


def pixel_size(cameras, bbox) -> float:
    """Median over the cameras of the width of a pixel at the centre of `bbox` (2, 3): distance / focal length."""
    centre = torch.as_tensor(bbox, dtype=torch.float32).mean(0)
    distance = (cameras.c2w[:, :3, 3].float() - centre).norm(dim=-1)
    focal = torch.as_tensor(cameras.fx, dtype=torch.float32).expand_as(distance)
    return float((distance / focal).median())


def _maybe_ndc(rays: RayBundle, cameras, cam_idx: torch.Tensor, info: SceneInfo) -> RayBundle:
    if not info.ndc:
        return rays
    from nerf.render.ndc import ndc_rays

    return ndc_rays(rays, cameras.fx[cam_idx], cameras.fy[cam_idx], cameras.width, cameras.height, near_plane=1.0)


def pixel_rays(cameras, cam_idx: torch.Tensor, x: torch.Tensor, y: torch.Tensor, info: SceneInfo) -> RayBundle:
    """Rays through pixel coordinates (x, y) (centres at +0.5) of cameras `cam_idx`, all (n,)."""
    rays = rays_from_pixels(cameras, cam_idx, x, y, info.near, info.far)
    return _maybe_ndc(rays, cameras, cam_idx, info)


def view_pixel_rays(cameras, index: int, info: SceneInfo, start: int, stop: int, scale: float = 1.0) -> RayBundle:
    """Rays of pixels [start, stop) (row-major) of one view resized by `scale`, made on demand."""
    w = int(round(cameras.width * scale))
    n = torch.arange(start, stop, device=cameras.c2w.device)
    x = ((n % w).float() + 0.5) / scale
    y = (torch.div(n, w, rounding_mode="floor").float() + 0.5) / scale
    return pixel_rays(cameras, torch.full_like(n, index), x, y, info)


def view_rays(cameras, index: int, info: SceneInfo, scale: float = 1.0) -> RayBundle:
    """All rays of one view at once (small images; whole frames go through `view_pixel_rays` in chunks)."""
    h, w = int(round(cameras.height * scale)), int(round(cameras.width * scale))
    return view_pixel_rays(cameras, index, info, 0, h * w, scale)


def ndc_frusta_box(cameras, info: SceneInfo, margin: float = 0.02) -> torch.Tensor:
    """(2, 3) box around every training camera's NDC frustum (the rays through the image
    borders, from NDC depth 0 to 1; straight lines stay straight in NDC), widened by `margin` of
    its size on each side."""
    w, h = cameras.width, cameras.height
    dev = cameras.c2w.device
    xs, ys = torch.arange(w, device=dev).float() + 0.5, torch.arange(h, device=dev).float() + 0.5
    bx = torch.cat([xs, xs, torch.full_like(ys, 0.5), torch.full_like(ys, w - 0.5)])
    by = torch.cat([torch.full_like(xs, 0.5), torch.full_like(xs, h - 0.5), ys, ys])
    n_cam, m = cameras.c2w.shape[0], bx.shape[0]
    cam = torch.arange(n_cam, device=dev).repeat_interleave(m)
    rays = pixel_rays(cameras, cam, bx.repeat(n_cam), by.repeat(n_cam), info)
    ends = torch.cat([rays.origins + rays.directions * rays.near, rays.origins + rays.directions * rays.far])
    lo, hi = ends.amin(0), ends.amax(0)
    pad = margin * (hi - lo)
    return torch.stack([lo - pad, hi + pad])
