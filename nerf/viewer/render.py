"""Rendering at a browser's camera: viser's pose (OpenCV axes, vertical field of view) as one of
the project's cameras, and a chunked render that stops as soon as the camera moves on."""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from nerf.datasets.scene import Cameras
from nerf.models.base import RENDER
from nerf.render.camera_path import matrix_from_quat, quat_from_matrix
from nerf.render.rays import rays_from_pixels
from nerf.render.video import depth_to_rgb, to_uint8
from nerf.scene_rays import SceneInfo, view_pixel_rays

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])  # flips y (down -> up) and z (forward -> back)


def c2w_from_viser(wxyz, position) -> np.ndarray:
    """A viser camera (rotation wxyz and position of an OpenCV camera in the world) as an OpenGL
    camera-to-world (4, 4)."""
    m = np.eye(4)
    m[:3, :3] = matrix_from_quat(np.asarray(wxyz, dtype=np.float64))[0] @ OPENCV_TO_OPENGL
    m[:3, 3] = np.asarray(position, dtype=np.float64)
    return m


def viser_from_c2w(c2w) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of viser's OpenCV camera for an OpenGL camera-to-world (4, 4)."""
    m = np.asarray(c2w, dtype=np.float64)
    return quat_from_matrix(m[:3, :3] @ OPENCV_TO_OPENGL)[0], m[:3, 3].copy()


def view_size(aspect: float, height: int) -> tuple[int, int]:
    """(width, height) of a render `height` rows high at the browser's aspect (width / height)."""
    h = max(int(height), 4)
    return max(int(round(h * max(aspect, 1e-3))), 4), h


def browser_camera(c2w, fov: float, aspect: float, height: int, device="cpu") -> Cameras:
    """One pinhole camera: OpenGL c2w (4, 4), vertical field of view `fov` (radians), the browser's
    aspect, `height` rows; square pixels, principal point at the centre."""
    w, h = view_size(aspect, height)
    f = 0.5 * h / math.tan(0.5 * fov)
    one = lambda v: torch.tensor([float(v)], device=device)  # noqa: E731
    return Cameras(c2w=torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=device)[None],
                   fx=one(f), fy=one(f), cx=one(w / 2.0), cy=one(h / 2.0), width=w, height=h)


@torch.no_grad()
def render_camera(model, cams: Cameras, info: SceneInfo, chunk: int, ndc_reference: Cameras | None = None,
                  should_stop: Callable[[], bool] | None = None) -> dict[str, torch.Tensor] | None:
    """rgb (H, W, 3), depth (H, W), opacity (H, W) of camera 0 of `cams`, `chunk` rays at a time;
    None as soon as `should_stop()` says the view is no longer wanted.

    The rays are `render_view`'s, except in NDC scenes, where the warp keeps the training cameras'
    focal length and image size (`ndc_reference`): NDC space is defined by them, not by the view.
    """
    was_training = model.training
    model.eval()
    try:
        h, w = cams.height, cams.width
        n = h * w
        out: dict[str, torch.Tensor] = {}
        for start in range(0, n, chunk):
            if should_stop is not None and start and should_stop():
                return None
            stop = min(start + chunk, n)
            if info.ndc and ndc_reference is not None:
                from nerf.render.ndc import ndc_rays

                idx = torch.arange(start, stop, device=cams.c2w.device)
                x, y = (idx % w).float() + 0.5, torch.div(idx, w, rounding_mode="floor").float() + 0.5
                rays = rays_from_pixels(cams, torch.zeros_like(idx), x, y, info.near, info.far)
                rays = ndc_rays(rays, float(ndc_reference.fx[0]), float(ndc_reference.fy[0]), ndc_reference.width,
                                ndc_reference.height, near_plane=1.0)
            else:
                rays = view_pixel_rays(cams, 0, info, start, stop)
            res = model(rays, mode=RENDER)
            for k in ("rgb", "depth", "opacity"):
                v = res[k].detach()
                if k not in out:
                    out[k] = torch.empty((n, *v.shape[1:]), dtype=v.dtype)
                out[k][start:stop] = v.cpu()
        return {"rgb": out["rgb"].reshape(h, w, 3), "depth": out["depth"].reshape(h, w),
                "opacity": out["opacity"].reshape(h, w)}
    finally:
        model.train(was_training)


def to_display(result: dict[str, torch.Tensor], output: str, info: SceneInfo) -> np.ndarray:
    """The (H, W, 3) uint8 image the browser shows: rgb, colour-mapped depth or opacity as grey."""
    if output == "depth":
        return to_uint8(depth_to_rgb(result["depth"], info.near, info.far, result["opacity"]))
    if output == "opacity":
        return to_uint8(result["opacity"][..., None].expand(-1, -1, 3))
    return to_uint8(result["rgb"])
