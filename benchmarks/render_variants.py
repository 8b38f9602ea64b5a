"""Render-time settings side by side: seconds per held-out view and PSNR of trained runs under
config variants, the variants taking turns on the same views.

    python benchmarks/render_variants.py RUN_DIR [RUN_DIR ...] --variant NAME=KEY=VALUE[,KEY=VALUE]
                                         [--variant ...] [--views 3] [--reps 3] [--tag NAME]

A variant with no overrides is written NAME= (the run's own settings). For each run the model is
loaded once per variant; after one untimed warm-up view per variant, the variants render the same
`--views` held-out views in turn, `--reps` rounds, and the median seconds per view is reported
with the mean PSNR of the views (a render-time setting that changes the image shows up there).
Example, the first marching window of renders:

    python benchmarks/render_variants.py runs/cup_desk --variant w256=model.fast.render_window=256 \\
        --variant w16=model.fast.render_window=16

A change to the marching code itself is compared the same way: `--occupancy-at COMMIT` adds a
variant `occupancy@COMMIT` that renders with the run's own settings through render/occupancy.py as
it was at that commit (read with git, imported beside the working tree's), for example the parent
of a commit that changes the occupancy listing:

    python benchmarks/render_variants.py runs/cup_desk --variant now= --occupancy-at HEAD~1

The C kernels (render/native.py) against the torch code they replace: `--native-off NAME` adds a
variant `NAME` that renders with the run's own settings and NERF_NATIVE=0.

Writes benchmarks/results/render_variants_<tag>-<date>.json (today's date, YYYY-MM-DD).
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, native_kernels, parse_variant, write_json  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402
from nerf.inference.views import psnr, render_view  # noqa: E402
from nerf.runs.run_folder import load_run_config, load_trained_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OCCUPANCY_FILE = "render/occupancy.py"


def occupancy_class_at(commit: str) -> type:
    """The OccupancyGrid class of render/occupancy.py as of `commit`, imported from a temporary
    copy (removed once imported: the module lives on in memory)."""
    proc = subprocess.run(["git", "show", f"{commit}:{OCCUPANCY_FILE}"], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"--occupancy-at {commit}: {proc.stderr.strip()}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"occupancy_{commit.replace('~', '_').replace('^', '_')}.py"
        path.write_text(proc.stdout)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.OccupancyGrid


def compare_run(run_dir: Path, variants: list[tuple[str, list[str]]], views: int, reps: int,
                occupancy_at: str | None = None, native_off: str | None = None) -> dict:
    """{variant: {seconds_median, psnr, samples}} for one run, the variants rendering in turn."""
    loaded = {}
    if native_off:
        variants = [*variants, (native_off, [])]
    for name, overrides in variants:
        cfg = load_run_config(run_dir, overrides)
        model, step, _ = load_trained_model(run_dir, cfg, torch.device("cpu"))
        loaded[name] = (model, cfg.render.chunk, step)
    if occupancy_at:  # the same model and settings, marched by the commit's code (same buffers)
        cfg = load_run_config(run_dir, [])
        model, step, _ = load_trained_model(run_dir, cfg, torch.device("cpu"))
        model.grid.__class__ = occupancy_class_at(occupancy_at)
        model.grid._coarse = None
        loaded[f"occupancy@{occupancy_at}"] = (model, cfg.render.chunk, step)
        variants = [*variants, (f"occupancy@{occupancy_at}", [])]
    cfg = load_run_config(run_dir, [])
    test = load_scene(dataclasses.replace(cfg.data, max_images=views), "test")
    views = min(views, len(test))
    seconds = {name: [] for name in loaded}
    psnrs = {name: [0.0] * views for name in loaded}
    for name, (model, chunk, _) in loaded.items():  # warm-up
        with native_kernels(name != native_off):
            render_view(model, test.cameras, 0, model.info, chunk)
    for _ in range(reps):
        for name, (model, chunk, _) in loaded.items():
            with native_kernels(name != native_off):
                for i in range(views):
                    t0 = time.perf_counter()
                    out = render_view(model, test.cameras, i, model.info, chunk)
                    seconds[name].append(time.perf_counter() - t0)
                    psnrs[name][i] = psnr(out["rgb"], test.images[i])
    size = f"{test.cameras.width}x{test.cameras.height}"
    return {name: {"overrides": dict(variants)[name], "step": loaded[name][2], "size": size, "views": views,
                   "seconds_per_view_median": median(seconds[name]), "seconds": seconds[name],
                   "psnr": sum(psnrs[name]) / views}
            for name in loaded}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+")
    ap.add_argument("--variant", action="append", required=True, type=functools.partial(parse_variant, allow_empty=True),
                    help="NAME=KEY=VALUE[,KEY=VALUE]: render-time overrides of one variant (repeat the flag); "
                         "data.* overrides do not apply, every variant is scored on the run's own views")
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tag", default="compare", help="results file suffix, before the date")
    ap.add_argument("--occupancy-at", metavar="COMMIT",
                    help="also render through render/occupancy.py as of this commit (the run's own settings)")
    ap.add_argument("--native-off", metavar="NAME",
                    help="also render with the run's own settings and the C kernels off (NERF_NATIVE=0), as NAME")
    a = ap.parse_args()
    names = [name for name, _ in a.variant] + ([a.native_off] if a.native_off else [])
    if len(set(names)) != len(names):
        raise SystemExit(f"--variant: each variant needs its own name, got {', '.join(names)}")
    at_start = machine()  # load average before the renders, not of them
    results = {}
    for run in a.run_dirs:
        results[run] = compare_run(Path(run), a.variant, a.views, a.reps, a.occupancy_at, a.native_off)
        for name, r in results[run].items():
            print(f"{run} {name}: {r['size']} median {r['seconds_per_view_median']:.2f} s/view, "
                  f"PSNR {r['psnr']:.2f} dB over {r['views']} views", flush=True)
    write_json(dated(f"render_variants_{a.tag}", "json"),
               {"views_asked": a.views, "reps": a.reps, "occupancy_at": a.occupancy_at, "native_off": a.native_off,
                "runs": results,
                "machine": at_start})


if __name__ == "__main__":
    main()
