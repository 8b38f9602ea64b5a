"""fp32 against bf16 autocast for the fast method: seconds for a stretch of training steps and
how resident memory moves over it, each precision in a fresh process (same seed, same batches).

    python benchmarks/precision.py [--config blender_fast] [--data LEGO] [--downscale 4]
                                   [--warmup 40] [--steps 80] [--reps 1] [--minutes M ...]

--reps R: the precisions take turns R times, in fresh processes (0: no step timing), medians reported;
--unbucketed adds bf16 without the row buckets to the turns. --minutes M: also
`train-scene --data DATA model.method=fast data.downscale=D train.max_minutes=M
train.precision=P` for each precision in turn, scored by its own evaluation (PSNR at equal time).

Writes benchmarks/results/precision_<config>[-<tag>]-<date>.json (today's date, YYYY-MM-DD). The
fast method's matrices change shape at every step (the number of kept samples varies); this is
where a per-shape kernel cache shows.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.capture_training import train_and_score  # noqa: E402
from benchmarks.common import LEGO, dated, machine, median, write_json  # noqa: E402


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2 ** 20


def one(a) -> dict:
    """Run in this process: `--warmup` steps untimed, then `--steps` timed."""
    import torch

    from nerf.config import load_config
    from nerf.training.trainer import Trainer

    over = [f"train.precision={a.precision.split('-')[0]}", "train.eval_every=0", "train.checkpoint_every=100000000"]
    if a.config != "builtin":
        over += [f"data.path={a.data}", f"data.downscale={a.downscale}"]
    cfg = load_config(a.config, over)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", torch.device("cpu"), log=lambda *x: None, show_progress=False)
        for _ in range(a.warmup):
            tr.train_step()
        rss0, t0 = resident_mb(), time.perf_counter()
        for _ in range(a.steps):
            figs = tr.train_step()
        return {"precision": a.precision, "seconds": time.perf_counter() - t0, "rss_start_mb": rss0,
                "rss_end_mb": resident_mb(), "psnr_last_step": figs["psnr"], "samples_per_ray": figs["samples_per_ray"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="blender_fast")
    ap.add_argument("--data", default=str(LEGO))
    ap.add_argument("--downscale", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=40)
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--minutes", type=float, nargs="*", default=[], help="also train this long in each precision")
    ap.add_argument("--runs", default="/tmp/precision_runs", help="run folders of the --minutes runs")
    ap.add_argument("--tag", default="", help="results file suffix, after the config's name")
    ap.add_argument("--unbucketed", action="store_true",
                    help="also time bf16 without padding the rows to buckets (every new shape its own kernel)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "bf16-unbucketed"], help=argparse.SUPPRESS)  # child
    a = ap.parse_args()
    if a.precision == "bf16-unbucketed":  # the control: bf16 on the rows as they come
        import nerf.fields.grid_field as grid_field

        grid_field.bucket_rows = lambda n: n
    if a.precision:
        print(json.dumps(one(a)))
        return
    rows, at_start = [], machine()
    for _ in range(a.reps):
        for precision in ("bf16", "fp32") + (("bf16-unbucketed",) if a.unbucketed else ()):
            cmd = [sys.executable, __file__, "--precision", precision, "--config", a.config, "--data", a.data,
                   "--downscale", str(a.downscale), "--warmup", str(a.warmup), "--steps", str(a.steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(f"{precision}: steps {a.warmup}-{a.warmup + a.steps} in {row['seconds']:.1f} s, resident "
                  f"{row['rss_start_mb']:.0f} -> {row['rss_end_mb']:.0f} MB", flush=True)
    names = dict.fromkeys(r["precision"] for r in rows)
    medians = {p: median([r["seconds"] for r in rows if r["precision"] == p]) for p in names}
    if medians:
        print(f"median seconds for {a.steps} steps: " + ", ".join(f"{p} {v:.1f}" for p, v in medians.items()))
    timed = []
    for minutes in a.minutes:
        for precision in ("bf16", "fp32"):
            over = ["model.method=fast", f"data.downscale={a.downscale}", f"train.precision={precision}"]
            r = train_and_score(Path(a.data), Path(a.runs) / f"{Path(a.data).name}-{precision}-{minutes:g}min",
                                minutes, over)
            timed.append({"precision": precision, **r})
            print(f"{precision} {minutes:g} min: {r['step']} steps, {r['psnr']:.2f} dB / {r['ssim']:.4f} over "
                  f"{r['views']} views, {r['render_s']:.2f} s per render", flush=True)
    path = dated(f"precision_{a.config}" + (f"-{a.tag}" if a.tag else ""), "json")
    write_json(path, {"rows": rows, "median_seconds": medians, "timed_runs": timed, "settings": vars(a),
                      "machine": at_start})


if __name__ == "__main__":
    main()
