"""Rendering a run's novel-view path to mp4: RGB and colour-mapped depth, one frame at a time."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from nerf.datasets.scene import Cameras
from nerf.errors import UserError
from nerf.inference.views import render_view
from nerf.render.paths import blender_spherical_path, orbit_from_poses, spiral_path
from nerf.render.video import VideoWriter, depth_to_rgb
from nerf.scene_rays import SceneInfo


def path_cameras(scene_json: dict, path: str, frames: int, downscale: int) -> Cameras:
    """The video cameras: the chosen path with the first training camera's intrinsics / downscale."""
    if path == "auto":
        path = "spherical" if scene_json.get("format") == "blender" else scene_json.get("render_path") or "orbit"
    if path == "spherical":
        c2w = blender_spherical_path(frames)
    elif path == "spiral":
        if not scene_json.get("world_bounds"):
            raise UserError("video.path=spiral: needs an LLFF scene's depth bounds; use orbit for this run")
        near, far = scene_json["world_bounds"]
        c2w = spiral_path(torch.tensor(scene_json["train_c2w"]), near, far, frames)
    else:
        c2w = orbit_from_poses(torch.tensor(scene_json["train_c2w"]), frames)
    k = scene_json["intrinsics"]
    full = lambda v: torch.full((frames,), float(v) / downscale)  # noqa: E731
    return Cameras(c2w=c2w, fx=full(k["fx"]), fy=full(k["fy"]), cx=full(k["cx"]), cy=full(k["cy"]),
                   width=int(k["width"]) // downscale, height=int(k["height"]) // downscale)


def render_video(run_dir: Path, model, scene_json: dict, frames: int, fps: float, downscale: int, path: str,
                 chunk: int, show_progress: bool = True) -> tuple[Path, Path]:
    """Write RUN_DIR/videos/rgb.mp4 and depth.mp4; returns their paths."""
    info = SceneInfo(**scene_json["info"])
    device = next(model.parameters()).device
    cams = path_cameras(scene_json, path, frames, downscale).to(device)
    out = run_dir / "videos"
    rgb_path, depth_path = out / "rgb.mp4", out / "depth.mp4"
    with VideoWriter(rgb_path, fps) as rgb_w, VideoWriter(depth_path, fps) as depth_w:
        for i in tqdm(range(frames), desc="render-video", unit="frame", disable=not show_progress):
            r = render_view(model, cams, i, info, chunk)
            rgb_w.write(r["rgb"])
            depth_w.write(depth_to_rgb(r["depth"], info.near, info.far, r["opacity"]))
    return rgb_path, depth_path
