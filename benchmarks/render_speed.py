"""How fast a trained run renders: seconds per held-out view (median of several) and the wall
time of a whole `render-video` path, with samples per ray, from a run folder written by train-scene.
The timed views are also scored (PSNR, SSIM against the held-out photos), so a render-time
override (e.g. model.fast.render_early_stop=0.01) is judged on what it costs in quality as well.

    python benchmarks/render_speed.py RUN_DIR [--views 5] [--video-frames 120] [--tag NAME] [KEY=VALUE ...]

Writes benchmarks/results/render_speed_<tag>-<date>.json (today's date, YYYY-MM-DD). The video is
rendered exactly as `render-video RUN_DIR` does (same path, resolution and mp4 encoding), into
RUN_DIR/videos.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, peak_rss_mb, write_json  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402
from nerf.inference.video import render_video  # noqa: E402
from nerf.inference.views import psnr, render_view, ssim  # noqa: E402
from nerf.runs.run_folder import load_run_config, load_trained_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--views", type=int, default=5, help="held-out views to time (after one warm-up view)")
    ap.add_argument("--video-frames", type=int, default=120, help="frames of the timed video (0: skip)")
    ap.add_argument("--data", help="the scene folder, if it moved since training")
    ap.add_argument("--tag", default=None, help="results file suffix, before the date (default: the run folder's name)")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                    help="config overrides for rendering, e.g. train.precision=fp32 for a run trained in bf16")
    a = ap.parse_intermixed_args()
    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, ([f"data.path={a.data}"] if a.data else []) + a.overrides)
    model, step, scene_json = load_trained_model(run_dir, cfg, torch.device("cpu"))
    info = model.info
    test = load_scene(dataclasses.replace(cfg.data, max_images=a.views), "test")
    cams, views = test.cameras, min(a.views, len(test))  # a scene may hold fewer test views (fern: 3)
    render_view(model, cams, 0, info, cfg.render.chunk)  # warm-up
    seconds, psnrs, ssims = [], [], []
    for i in range(views):
        t0 = time.perf_counter()
        out = render_view(model, cams, i, info, cfg.render.chunk)
        seconds.append(time.perf_counter() - t0)
        psnrs.append(psnr(out["rgb"], test.images[i]))
        ssims.append(ssim(out["rgb"], test.images[i]))
    result = {"run": str(run_dir), "step": step, "method": cfg.model.method, "overrides": a.overrides,
              "precision": cfg.train.precision, "width": cams.width,
              "height": cams.height, "view_seconds": seconds, "view_seconds_median": median(seconds),
              "view_psnr": psnrs, "psnr": sum(psnrs) / views, "ssim": sum(ssims) / views}
    print(f"{cams.width}x{cams.height} view: median {median(seconds):.2f} s over {views} "
          f"({', '.join(f'{s:.2f}' for s in seconds)}); PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}")
    if a.video_frames:
        v = cfg.video
        t0 = time.perf_counter()
        render_video(run_dir, model, scene_json, a.video_frames, v.fps, v.downscale, v.path, cfg.render.chunk,
                     show_progress=False)
        dt = time.perf_counter() - t0
        result.update(video_frames=a.video_frames, video_seconds=dt)
        print(f"video: {a.video_frames} frames in {dt:.1f} s ({dt / a.video_frames:.2f} s/frame)")
    result.update(peak_rss_mb=peak_rss_mb(), machine=machine())
    write_json(dated(f"render_speed_{a.tag or run_dir.name}", "json"), result)


if __name__ == "__main__":
    main()
