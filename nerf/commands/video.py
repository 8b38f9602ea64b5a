"""render-video: render a trained run along a novel-view camera path to mp4."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command
from nerf.errors import UserError


def video(argv: list[str]) -> int:
    p = OneLineParser(prog="render-video", description="Render a trained run along a novel-view camera path to "
                      "RUN_DIR/videos/rgb.mp4 and RUN_DIR/videos/depth.mp4.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--frames", type=int, default=None, help="number of frames (default: video.frames, 120)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: video.fps, 30)")
    p.add_argument("--downscale", type=int, default=None, help="divide the training image size by K (default 1)")
    p.add_argument("--path", choices=["auto", "orbit", "spherical", "spiral", "interpolate"], default=None,
                   help="camera path (auto: the Blender 360 path for Blender scenes, the spiral for forward-facing "
                        "LLFF scenes, a smooth path through the training cameras (interpolate) for other real "
                        "captures, else an orbit of the training cameras)")
    p.add_argument("--camera-path", metavar="FILE",
                   help="render a camera_path.json (view-scene's or nerfstudio's) at its own size, frames and fps "
                        "to RUN_DIR/videos/<FILE's name>-rgb.mp4 and -depth.mp4")
    add_common_flags(p)
    a = p.parse_args(argv)
    from nerf.inference.video import file_cameras, load_camera_path, render_video
    from nerf.runs.run_folder import load_run_config, load_trained_model, read_scene_json

    if a.camera_path and (a.frames is not None or a.fps is not None or a.path is not None):
        raise UserError("--camera-path: the file sets the frames, fps and path; drop --frames, --fps and --path")
    # video.path in the config knows the paths of its own validation; `interpolate` is passed as is
    overrides = [f"video.{k}={v}" for k, v in (("frames", a.frames), ("fps", a.fps), ("downscale", a.downscale),
                                                 ("path", a.path)) if v is not None and v != "interpolate"]
    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, overrides)
    v = cfg.video
    cameras, name, fps, path = None, "", v.fps, a.path or v.path
    if a.camera_path:  # read before the model loads: a bad file is reported at once
        cam_path = load_camera_path(Path(a.camera_path), read_scene_json(run_dir))
        cameras, name, fps = file_cameras(cam_path, v.downscale), f"{Path(a.camera_path).stem}-", cam_path.fps
    if a.seed is not None:
        torch.manual_seed(a.seed)
    from nerf.training import distributed

    ranks, device = distributed.init(pick_device(a.device))  # under torchrun the frames are split among the ranks
    model, step, scene_json = load_trained_model(run_dir, cfg, device)
    t0 = time.perf_counter()
    rgb, depth = render_video(run_dir, model, scene_json, v.frames, fps, v.downscale, path, cfg.render.chunk,
                              show_progress=not a.quiet and ranks.writer, cameras=cameras, name=name,
                              ranks=ranks if ranks.active else None)
    dt = time.perf_counter() - t0
    n = v.frames if cameras is None else len(cameras)
    printer(a.quiet or not ranks.writer)(f"render-video: {n} frames in {dt:.1f} s ({dt / n:.2f} s/frame) -> {rgb}, {depth}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("render-video", video, argv)
