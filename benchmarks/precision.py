"""fp32 against bf16 autocast for the fast method: seconds for a stretch of training steps and
how resident memory moves over it, each precision in a fresh process (same seed, same batches).

    python benchmarks/precision.py [--config blender_fast] [--data LEGO] [--downscale 4]
                                   [--warmup 40] [--steps 80]

Writes benchmarks/results/precision_<config>-<date>.json (today's date, YYYY-MM-DD). The fast method's matrices change shape at
every step (the number of kept samples varies); this is where a per-shape kernel cache shows.
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

from benchmarks.common import LEGO, dated, machine, write_json  # noqa: E402


def resident_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2 ** 20


def one(a) -> dict:
    """Run in this process: `--warmup` steps untimed, then `--steps` timed."""
    import torch

    from nerf.config import load_config
    from nerf.training.trainer import Trainer

    over = [f"train.precision={a.precision}", "train.eval_every=0", "train.checkpoint_every=100000000"]
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
    ap.add_argument("--precision", choices=["fp32", "bf16"], help=argparse.SUPPRESS)  # child process
    a = ap.parse_args()
    if a.precision:
        print(json.dumps(one(a)))
        return
    rows = []
    for precision in ("bf16", "fp32"):
        cmd = [sys.executable, __file__, "--precision", precision, "--config", a.config, "--data", a.data,
               "--downscale", str(a.downscale), "--warmup", str(a.warmup), "--steps", str(a.steps)]
        row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{precision}: steps {a.warmup}-{a.warmup + a.steps} in {row['seconds']:.1f} s, resident "
              f"{row['rss_start_mb']:.0f} -> {row['rss_end_mb']:.0f} MB")
    write_json(dated(f"precision_{a.config}", "json"), {"rows": rows, "settings": vars(a), "machine": machine()})


if __name__ == "__main__":
    main()
