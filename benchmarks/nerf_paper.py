"""The paper model on lego: speed of one training step, and test PSNR against wall-clock time.

  python benchmarks/nerf_paper.py speed   [--downscale 4] [--steps 7] [--precision fp32 bf16]
  python benchmarks/nerf_paper.py quality [--downscale 8] [--minutes 30] [--marks 2 5 10 20 30]
                                          [--views 25] [--precision auto]

`speed` times training steps of the paper config (1024 rays, 64 + 128 samples, 8x256 MLPs) in a
fresh subprocess per precision (so peak memory is that configuration's own) and reports the
median seconds per step over --steps steps after 2 warm-up steps, rays/s, samples/s, peak RSS.
`quality` trains for --minutes of training time, checkpointing at each mark, then scores every
mark on --views evenly spaced test views (evaluation time is not training time). Writes, in
benchmarks/results/, nerf_paper_speed-<date>.{csv,json} and
nerf_paper_quality_ds<downscale>_<precision>-<date>.{csv,json,png} (date: today's, YYYY-MM-DD).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import LEGO, dated, machine, median, peak_rss_mb, plot_curves, write_csv, write_json  # noqa: E402


def _paper_cfg(downscale: int, precision: str, extra=()):
    from nerf.config import load_config

    return load_config("blender", [f"data.path={LEGO}", f"data.downscale={downscale}",
                                   f"train.precision={precision}", "train.eval_every=0", *extra])


def speed_one(downscale: int, precision: str, steps: int) -> dict:
    """Time `steps` training steps (after 2 warm-up steps) in this process."""
    from nerf.training.trainer import Trainer

    cfg = _paper_cfg(downscale, precision, ["data.max_images=100"])
    out = Path("/tmp") / f"nerf_speed_{precision}"
    tr = Trainer(cfg, out, torch.device("cpu"), overwrite=True, show_progress=False, log=lambda *a: None)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        figs = tr.train_step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    s = median(times)
    spr = figs["samples_per_ray"]
    return {"precision": precision, "resolution": f"{tr.scene.width}x{tr.scene.height}", "batch_rays": cfg.train.batch_rays,
            "samples_per_ray": spr, "s_per_step_median": round(s, 3), "s_per_step_min": round(min(times), 3),
            "rays_per_s": round(cfg.train.batch_rays / s, 1), "samples_per_s": round(cfg.train.batch_rays * spr / s),
            "peak_rss_mb": round(peak_rss_mb()), "steps_timed": steps}


def cmd_speed(a) -> None:
    rows = []
    for prec in a.precision:
        proc = subprocess.run([sys.executable, __file__, "_speed_one", str(a.downscale), prec, str(a.steps)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1])
    write_csv(dated("nerf_paper_speed", "csv"), rows)
    write_json(dated("nerf_paper_speed", "json"), {"machine": machine(), "rows": rows})


def cmd_quality(a) -> None:
    from nerf.datasets import load_scene
    from nerf.inference.views import score_views
    from nerf.training.trainer import Trainer

    cfg = _paper_cfg(a.downscale, a.precision, [f"train.seed={a.seed}", "train.checkpoint_every=100000000"])
    run = Path("/tmp") / f"nerf_quality_ds{a.downscale}_{a.precision}"
    tr = Trainer(cfg, run, torch.device("cpu"), overwrite=True, show_progress=False, log=lambda *x: None)
    test = load_scene(dataclasses.replace(cfg.data, max_images=a.views), "test")
    snapshots = []
    marks = sorted(m for m in a.marks if m <= a.minutes)
    start_load = machine()["load_avg_1min"]
    t_start = time.perf_counter()
    for mark in marks:
        while tr.train_seconds < mark * 60:
            t0 = time.perf_counter()
            tr.train_step()
            tr.train_seconds += time.perf_counter() - t0
        snapshots.append((mark, tr.step, {k: v.clone() for k, v in tr.model.state_dict().items()}))
        print(f"{mark} min: step {tr.step}", flush=True)
    rows = []
    for mark, step, state in snapshots:
        tr.model.load_state_dict(state)
        res = score_views(tr.model, test, tr.info, cfg.render.chunk)
        rows.append({"minutes": mark, "step": step, "psnr": round(res["psnr"], 3), "ssim": round(res["ssim"], 4),
                     "views": res["n_views"], "resolution": f"{test.width}x{test.height}",
                     "eval_s_per_view": round(res["seconds_per_view"], 2)})
        print(rows[-1], flush=True)
    tag = f"nerf_paper_quality_ds{a.downscale}_{a.precision}"
    write_csv(dated(tag, "csv"), rows)
    write_json(dated(tag, "json"), {"machine": machine(), "load_avg_at_start": start_load,
                                          "wall_s": time.perf_counter() - t_start, "rows": rows})
    plot_curves(dated(tag, "png"), {f"paper NeRF ({a.precision})": ([r["minutes"] for r in rows],
                                                                         [r["psnr"] for r in rows])},
                f"lego {rows[0]['resolution']}, {a.views} test views")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_speed_one":
        print(json.dumps(speed_one(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--downscale", type=int, default=4)
    s.add_argument("--steps", type=int, default=7)
    s.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    q = sub.add_parser("quality")
    q.add_argument("--downscale", type=int, default=8)
    q.add_argument("--minutes", type=float, default=30)
    q.add_argument("--marks", type=float, nargs="+", default=[2, 5, 10, 20, 30])
    q.add_argument("--views", type=int, default=25)
    q.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    q.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if not (LEGO / "transforms_train.json").is_file():
        raise SystemExit(f"lego not found at {LEGO}")
    {"speed": cmd_speed, "quality": cmd_quality}[a.cmd](a)


if __name__ == "__main__":
    main()
