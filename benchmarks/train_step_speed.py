"""Seconds per training step of a trained run's model under config variants, side by side.

    python benchmarks/train_step_speed.py RUN_DIR --variant NAME=KEY=VALUE[,KEY=VALUE] [--variant ...]
                                          [--steps 30] [--warmup 5] [--reps 3] [--tag NAME]

Each variant continues the run from its newest checkpoint (weights, optimiser state, step and
training time, so the learning rate is the run's own), in one process, on the same batches:
`--warmup` untimed steps, then `--steps` timed ones; the variants take turns `--reps` times and
the medians are reported. A late checkpoint is what matters for a change that depends on the
trained field (e.g. how many samples the pruning pass drops). Example, the pruning pass on fern:

    python benchmarks/train_step_speed.py runs/fern --variant skip=model.fast.prune_min_share=0.2 \\
        --variant always=model.fast.prune_min_share=0

`--native-off NAME` adds a variant NAME: the run's own settings with the C kernels off
(NERF_NATIVE=0, the torch code they replace).

Writes benchmarks/results/train_step_speed_<tag>-<date>.json (today's date, YYYY-MM-DD).
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, native_kernels, parse_variant, write_json  # noqa: E402
from nerf.runs.checkpoints import load_latest_checkpoint  # noqa: E402
from nerf.runs.run_folder import load_run_config  # noqa: E402
from nerf.training.trainer import Trainer  # noqa: E402


def timed_steps(run_dir: Path, state: dict, overrides: list[str], warmup: int, steps: int, tmp: Path) -> dict:
    """Continue `run_dir`'s checkpoint `state` under `overrides` and time `steps` training steps."""
    over = overrides + ["train.eval_every=0", "train.checkpoint_every=100000000", "train.max_steps=100000000"]
    cfg = load_run_config(run_dir, over)
    tr = Trainer(cfg, tmp, torch.device("cpu"), overwrite=True, log=lambda *a: None, show_progress=False)
    tr.model.load_state_dict(state["model"])
    tr.optimizer.load_state_dict(state["optimizer"])
    tr.generator.set_state(state["generator"])
    tr.step, tr.train_seconds = int(state["step"]), float(state.get("train_seconds", 0.0))
    for _ in range(warmup):
        tr.train_step()
    samples, t0 = 0.0, time.perf_counter()
    for _ in range(steps):
        samples += tr.train_step()["samples_per_ray"]
    return {"seconds_per_step": (time.perf_counter() - t0) / steps, "samples_per_ray": samples / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--variant", action="append", required=True, type=functools.partial(parse_variant, allow_empty=True),
                    help="NAME=KEY=VALUE[,KEY=VALUE]: config overrides of one variant (repeat the flag)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--tag", default=None, help="results file suffix, before the date (default: the run folder's name)")
    ap.add_argument("--native-off", metavar="NAME",
                    help="also a variant NAME: the run's own settings with the C kernels off (NERF_NATIVE=0)")
    a = ap.parse_args()
    variants = a.variant + ([(a.native_off, [])] if a.native_off else [])
    run_dir = Path(a.run_dir)
    found = load_latest_checkpoint(run_dir, map_location="cpu")
    if found is None:
        raise SystemExit(f"{run_dir}: no checkpoint to continue from")
    state, path = found
    rows = {name: [] for name, _ in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(a.reps):
            for name, overrides in variants:
                with native_kernels(name != a.native_off):
                    row = timed_steps(run_dir, state, overrides, a.warmup, a.steps, Path(tmp) / name)
                rows[name].append(row)
                print(f"rep {rep} {name}: {row['seconds_per_step']:.3f} s/step, {row['samples_per_ray']:.1f} samples/ray")
    summary = {name: {"overrides": dict(variants)[name],
                      "seconds_per_step_median": median([r["seconds_per_step"] for r in rs]),
                      "samples_per_ray_median": median([r["samples_per_ray"] for r in rs]), "reps": rs}
               for name, rs in rows.items()}
    for name, s in summary.items():
        print(f"{name}: median {s['seconds_per_step_median']:.3f} s/step, {s['samples_per_ray_median']:.1f} samples/ray")
    write_json(dated(f"train_step_speed_{a.tag or run_dir.name}", "json"),
               {"run": str(run_dir), "checkpoint": path.name, "steps": a.steps, "warmup": a.warmup,
                "variants": summary, "machine": machine()})


if __name__ == "__main__":
    main()
