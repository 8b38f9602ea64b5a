"""Rendering a run along a camera path to mp4: RGB and colour-mapped depth, one frame at a time.

The path is one of the built-in ones (`path_cameras`) or a camera_path.json file drawn in the
viewer or in nerfstudio (`file_cameras`). Every use of the run's training cameras goes through
`training_cameras`, the one place that reads them.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from tqdm import tqdm

from nerf.datasets.scene import Cameras
from nerf.errors import UserError
from nerf.inference.views import render_view
from nerf.render.camera_path import CameraPath, CameraPathError, capture_path, read_camera_path
from nerf.render.paths import blender_spherical_path, orbit_from_poses, spiral_path
from nerf.render.video import VideoWriter, depth_to_rgb
from nerf.runs.run_folder import refined_training_c2w
from nerf.scene_rays import SceneInfo

PATHS = ("auto", "orbit", "spherical", "spiral", "interpolate")
CAPTURE_FORMATS = ("transforms", "colmap", "llff")  # photos of the real world


def training_cameras(scene_json: dict, run_dir: Path | None = None) -> Cameras:
    """The run's training cameras (poses from scene.json, or as the model refined them when the run
    wrote refined_cameras.json; the first camera's intrinsics for all): what the viewer draws and
    the interpolated path flies through."""
    refined = refined_training_c2w(run_dir)
    c2w = torch.tensor(scene_json["train_c2w"] if refined is None else refined, dtype=torch.float32)
    k = scene_json["intrinsics"]
    full = lambda v: torch.full((len(c2w),), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(k["fx"]), fy=full(k["fy"]), cx=full(k["cx"]), cy=full(k["cy"]),
                   width=int(k["width"]), height=int(k["height"]))


def resolve_path(scene_json: dict, path: str) -> str:
    """`auto` made concrete: Blender's 360 path for Blender scenes, the spiral for forward-facing
    LLFF scenes, a smooth path through the training cameras for other real captures, else (the
    built-in scene) an orbit of the training cameras."""
    if path != "auto":
        return path
    fmt, suggested = scene_json.get("format"), scene_json.get("render_path")
    if fmt == "blender":
        return "spherical"
    if suggested == "spiral":
        return "spiral"
    if fmt in CAPTURE_FORMATS:
        return "interpolate"
    return suggested or "orbit"


def path_cameras(scene_json: dict, path: str, frames: int, downscale: int, run_dir: Path | None = None) -> Cameras:
    """The video cameras: the chosen path with the first training camera's intrinsics / downscale."""
    path = resolve_path(scene_json, path)
    train = training_cameras(scene_json, run_dir)
    if path == "spherical":
        c2w = blender_spherical_path(frames)
    elif path == "spiral":
        if not scene_json.get("world_bounds"):
            raise UserError("video.path=spiral: needs an LLFF scene's depth bounds; use orbit for this run")
        near, far = scene_json["world_bounds"]
        c2w = spiral_path(train.c2w, near, far, frames)
    elif path == "interpolate":
        c2w = capture_path(train.c2w, frames)
    else:
        c2w = orbit_from_poses(train.c2w, frames)
    full = lambda v: torch.full((frames,), float(v) / downscale)  # noqa: E731
    return Cameras(c2w=c2w, fx=full(train.fx[0]), fy=full(train.fy[0]), cx=full(train.cx[0]), cy=full(train.cy[0]),
                   width=train.width // downscale, height=train.height // downscale)


def load_camera_path(path: Path, scene_json: dict) -> CameraPath:
    """A camera_path.json, its errors as one-line user errors; a file without a render size gets the run's."""
    k = scene_json["intrinsics"]
    try:
        return read_camera_path(Path(path), default_size=(int(k["width"]), int(k["height"])))
    except CameraPathError as exc:
        raise UserError(str(exc)) from None


def file_cameras(camera_path: CameraPath, downscale: int = 1) -> Cameras:
    """Pinhole cameras for a camera path's frames: its vertical fov over its render size, centred,
    the size divided by `downscale`."""
    w, h = max(camera_path.width // downscale, 1), max(camera_path.height // downscale, 1)
    focal = 0.5 * h / torch.tan(torch.deg2rad(camera_path.fov.double()) / 2.0)
    n = len(camera_path.c2w)
    return Cameras(c2w=camera_path.c2w.float(), fx=focal.float(), fy=focal.float(), cx=torch.full((n,), w / 2.0),
                   cy=torch.full((n,), h / 2.0), width=w, height=h)


def render_video(run_dir: Path, model, scene_json: dict, frames: int, fps: float, downscale: int, path: str,
                 chunk: int, show_progress: bool = True, cameras: Cameras | None = None,
                 name: str = "", ranks=None) -> tuple[Path, Path]:
    """Write RUN_DIR/videos/{name}rgb.mp4 and {name}depth.mp4 along `cameras` (default: the path
    `path`); returns their paths. `ranks` (training/distributed.py, under torchrun) splits the
    frames among the processes; rank 0 receives them in order and writes."""
    info = SceneInfo(**scene_json["info"])
    device = next(model.parameters()).device
    if cameras is None:
        cameras = path_cameras(scene_json, path, frames, downscale, run_dir)
    cams = cameras.to(device)
    out = run_dir / "videos"
    rgb_path, depth_path = out / f"{name}rgb.mp4", out / f"{name}depth.mp4"
    def frame(i):
        r = render_view(model, cams, i, info, chunk)
        return r["rgb"].cpu(), depth_to_rgb(r["depth"], info.near, info.far, r["opacity"]).cpu()

    frames_out = ranks.map(len(cams), frame) if ranks is not None else ((i, frame(i)) for i in range(len(cams)))
    if ranks is not None and not ranks.writer:
        for _ in frames_out:  # renders this rank's frames for rank 0
            pass
        return rgb_path, depth_path
    with VideoWriter(rgb_path, fps) as rgb_w, VideoWriter(depth_path, fps) as depth_w:
        for _, (rgb, depth) in tqdm(frames_out, total=len(cams), desc="render-video", unit="frame",
                                    disable=not show_progress):
            rgb_w.write(rgb)
            depth_w.write(depth)
    return rgb_path, depth_path


def frames_for(seconds: float, fps: float) -> int:
    """The frame count of a path of `seconds` at `fps` (at least one)."""
    return max(int(math.floor(seconds * fps + 0.5)), 1)
