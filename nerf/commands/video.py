"""render-video: render a trained run along a novel-view camera path to mp4."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command


def video(argv: list[str]) -> int:
    p = OneLineParser(prog="render-video", description="Render a trained run along a novel-view camera path to "
                      "RUN_DIR/videos/rgb.mp4 and RUN_DIR/videos/depth.mp4.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--frames", type=int, default=None, help="number of frames (default: video.frames, 120)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: video.fps, 30)")
    p.add_argument("--downscale", type=int, default=None, help="divide the training image size by K (default 1)")
    p.add_argument("--path", choices=["auto", "orbit", "spherical", "spiral"], default=None,
                   help="camera path (auto: the Blender 360 path for Blender scenes, the spiral for forward-facing "
                        "LLFF scenes, else an orbit of the training cameras)")
    add_common_flags(p)
    a = p.parse_args(argv)
    from nerf.inference.video import render_video
    from nerf.runs.run_folder import load_run_config, load_trained_model

    overrides = [f"video.{k}={v}" for k, v in (("frames", a.frames), ("fps", a.fps), ("downscale", a.downscale),
                                                 ("path", a.path)) if v is not None]
    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, overrides)
    if a.seed is not None:
        torch.manual_seed(a.seed)
    model, step, scene_json = load_trained_model(run_dir, cfg, pick_device(a.device))
    v = cfg.video
    t0 = time.perf_counter()
    rgb, depth = render_video(run_dir, model, scene_json, v.frames, v.fps, v.downscale, v.path, cfg.render.chunk,
                              show_progress=not a.quiet)
    dt = time.perf_counter() - t0
    printer(a.quiet)(f"render-video: {v.frames} frames in {dt:.1f} s ({dt / v.frames:.2f} s/frame) -> {rgb}, {depth}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("render-video", video, argv)
