"""PSNR against wall-clock time: the fast method vs the paper model, in one run on one machine.

Trains each method for `--minutes` of training time (evaluation excluded from the clock), scoring
the test split at the checkpoints `--evals` (fractions of the budget), then times one novel view
and a short video path at `--render-res`, and records peak memory. Writes
benchmarks/results/<tag>-<date>.csv (method, seconds, step, psnr, ssim, samples_per_ray; date:
today's, YYYY-MM-DD) and, when matplotlib is installed (the optional 'bench' extra), <tag>-<date>.png.

Full runs take minutes to hours and are not run in CI; their figures live in the records of
benchmarks/results/ (lego-fast-time-budgets-*.md, lego-400-fast-30min-*.md).

Examples:
  python benchmarks/fast_vs_nerf.py --minutes 2 --downscale 4                # a 2-minute budget
  python benchmarks/fast_vs_nerf.py --minutes 0.5 --test-views 10 --methods fast   # a short check
  python benchmarks/fast_vs_nerf.py --builtin --minutes 1                    # the built-in scene
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import RESULTS, dated  # noqa: E402
from nerf.config import load_config  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402
from nerf.inference.views import render_view, score_views  # noqa: E402
from nerf.training.trainer import Trainer  # noqa: E402

LEGO = ROOT.parent / "shared" / "data" / "nerf_synthetic" / "lego"

# Per-method configs: configs/blender_fast.yaml (tuned here) and configs/blender.yaml (the paper's
# setup, unchanged; a smaller render chunk keeps its memory in check).
BLENDER = {"fast": ("blender_fast", []), "nerf": ("blender", ["render.chunk=4096"])}
BUILTIN = {"fast": ("builtin", []), "nerf": ("builtin_nerf", [])}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
    except OSError:
        return "unknown"


def run_method(method: str, a, rows: list, run_root: Path) -> dict:
    if a.builtin:
        config, extra = BUILTIN[method]
        overrides = list(extra)
    else:
        config, extra = BLENDER[method]
        overrides = [f"data.path={a.data}", f"data.downscale={a.downscale}", "train.max_minutes=0"] + extra
    # PSNR is read at several marks of one run, so the lr decays by steps, not towards a time budget
    overrides += [f"train.threads={a.threads}", "train.eval_every=0", "train.checkpoint_every=10000000",
                  f"train.max_steps={a.max_steps}", "train.lr_decay_over=steps"] + a.override
    cfg = load_config(config, overrides)
    tr = Trainer(cfg, run_root / method, torch.device("cpu"), overwrite=True, log=lambda *x: None,
                 show_progress=False)
    paper = method == "nerf"  # the paper model renders ~100x slower: it may score fewer views, fewer times
    views = a.nerf_test_views if paper and a.nerf_test_views is not None else a.test_views
    test = load_scene(dataclasses.replace(cfg.data, max_images=views), "test")
    budget = a.minutes * 60
    fractions = a.nerf_evals if paper and a.nerf_evals else a.evals
    marks = sorted({min(max(f, 0.0), 1.0) * budget for f in fractions} | {budget})
    spr = 0.0
    for mark in marks:
        while tr.train_seconds < mark and tr.step < cfg.train.max_steps:
            t0 = time.perf_counter()
            figs = tr.train_step()
            tr.train_seconds += time.perf_counter() - t0
            spr = figs["samples_per_ray"]
        t0 = time.perf_counter()
        res = score_views(tr.model, test, tr.info, cfg.render.chunk)
        row = {"method": method, "seconds": round(tr.train_seconds, 2), "step": tr.step, "psnr": round(res["psnr"], 3),
               "ssim": round(res["ssim"], 4), "samples_per_ray": round(spr, 2), "test_views": len(test),
               "eval_seconds_per_view": round((time.perf_counter() - t0) / len(test), 3)}
        rows.append(row)
        print(row, flush=True)
    # render timing at the target resolution
    cams = test.cameras
    scale = a.render_res / cams.width
    render = {}
    if a.render_res > 0 and (method == "fast" or a.render_nerf):
        render_view(tr.model, cams, 0, tr.info, cfg.render.chunk, scale=scale)  # warm-up
        t0 = time.perf_counter()
        for i in range(a.render_frames):
            render_view(tr.model, cams, i % len(cams), tr.info, cfg.render.chunk, scale=scale)
        render = {"render_res": a.render_res, "seconds_per_view": (time.perf_counter() - t0) / a.render_frames}
        print(f"{method}: {render}", flush=True)
    return {"method": method, "final_psnr": rows[-1]["psnr"], **render, "peak_rss_gb": peak_rss_gb()}


def plot(rows: list, path: Path, title: str) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e .[bench]); skipping the plot")
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = [(r["seconds"] / 60, r["psnr"]) for r in rows if r["method"] == method]
        ax.plot(*zip(*pts), marker="o", label=method)
    ax.set_xlabel("training time (min)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return True


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(LEGO), help="Blender scene folder (default: lego)")
    p.add_argument("--builtin", action="store_true", help="use the built-in scene and its configs instead")
    p.add_argument("--downscale", type=int, default=4, help="image downscale (4: 200x200 lego)")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per method")
    p.add_argument("--evals", type=float, nargs="*", default=[0.125, 0.25, 0.5, 1.0],
                   help="fractions of the budget at which to score the test views")
    p.add_argument("--test-views", type=int, default=0, help="evenly spaced test views to score (0: all)")
    p.add_argument("--nerf-test-views", type=int, default=None, help="test views for the paper model (default: --test-views)")
    p.add_argument("--nerf-evals", type=float, nargs="*", default=None, help="--evals for the paper model")
    p.add_argument("--methods", nargs="+", default=["fast", "nerf"], choices=["fast", "nerf"])
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--max-steps", type=int, default=10_000_000)
    p.add_argument("--render-res", type=int, default=400, help="width of the timed novel view (0: skip)")
    p.add_argument("--render-frames", type=int, default=2, help="views timed at --render-res")
    p.add_argument("--render-nerf", action="store_true", help="also time the paper model's render (slow)")
    p.add_argument("--override", nargs="*", default=[], help="extra KEY=VALUE config overrides for every method")
    p.add_argument("--tag", default=None, help="results file name, before the date (default: derived from the settings)")
    a = p.parse_args(argv)
    scene = "builtin" if a.builtin else f"{Path(a.data).name}-ds{a.downscale}"
    tag = a.tag or f"{scene}-{a.minutes:g}min"
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    if a.threads:
        torch.set_num_threads(a.threads)
    for method in a.methods:
        summary.append(run_method(method, a, rows, Path("/tmp") / "nerf-bench" / tag))
    out = dated(tag, "csv")
    with open(out, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    title = f"{scene}, {a.test_views or 'all'} test views, {torch.get_num_threads()} threads, commit {commit()}"
    plot(rows, out.with_suffix(".png"), title)
    print(title)
    for s in summary:
        print(s)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
