"""Real captures trained with the plain command: `train-scene --data DIR train.max_minutes=M`,
and the same with one capture option changed from its default (scene contraction turned off;
appearance codes or camera refinement, both off by default, turned on), scored on the held-out
frames (every 8th) that the run's own evaluation renders. One run at a time, each in a fresh
process with the machine's threads.

    python benchmarks/capture_training.py --captures cup_desk egypt --minutes 10 [--ablations]
    python benchmarks/capture_training.py --captures bird_figure --variants no_contraction

Writes benchmarks/results/capture-training-<date>.md (a table; rows added to today's record).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine  # noqa: E402

CAPTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "captures"
ABLATIONS = {"plain": [], "no contraction": ["model.fast.contraction=none"],
             "with appearance codes": ["model.fast.appearance_dim=16"],
             "with camera refinement": ["model.fast.pose_refine=true"]}


def train_and_score(data: Path, out: Path, minutes: float, overrides: list[str], env: dict | None = None) -> dict:
    """`train-scene --data DATA train.max_minutes=M OVERRIDES` into `out`, in a fresh process (with
    `env` added to its environment), then the figures of its own evaluation (metrics.json) with the
    commit and load at its start."""
    cmd = ["train-scene", "--data", str(data), f"train.max_minutes={minutes:g}", "--out", str(out),
           "--overwrite", "--no-showcase", "--quiet"] + overrides
    at_start, start = machine(), time.perf_counter()  # the commit the run imports, the load before it
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return {"minutes": minutes, "psnr": m["psnr"], "ssim": m["ssim"], "step": m["step"], "views": m["n_views"],
            "size": f"{m['width']}x{m['height']}", "s_per_frame": m["seconds_per_view"],
            "render_s": m.get("render_seconds_per_view", float("nan")),
            "held_out": [f["name"] for f in m["per_image"]], "per_image_psnr": [f["psnr"] for f in m["per_image"]],
            "wall_min": (time.perf_counter() - start) / 60, "machine": at_start}


def run(capture: str, minutes: float, variant: str, out_root: Path) -> dict:
    out = out_root / f"{capture}-{variant.replace(' ', '_')}-{minutes:g}min"
    r = train_and_score(CAPTURES / capture, out, minutes, ABLATIONS[variant])
    return {"capture": capture, "variant": variant, **r,
            "command": " ".join(["train-scene", "--data", str(CAPTURES / capture), f"train.max_minutes={minutes:g}"]
                                + ABLATIONS[variant])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", nargs="+", default=["egypt", "coke_can", "cup_desk", "bird_figure"])
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0])
    ap.add_argument("--ablations", action="store_true", help="also each option changed from its default")
    ap.add_argument("--variants", nargs="+", choices=[v.replace(" ", "_") for v in ABLATIONS], default=None,
                    help="only these variants (instead of plain, or of all with --ablations)")
    ap.add_argument("--out", default="/tmp/capture_training", help="run folders")
    a = ap.parse_args()
    rows = []
    for capture in a.captures:
        for minutes in a.minutes:
            chosen = [v.replace("_", " ") for v in a.variants] if a.variants else None
            for variant in chosen or (ABLATIONS if a.ablations else ["plain"]):
                rows.append(run(capture, minutes, variant, Path(a.out)))
                r = rows[-1]
                print(f"{capture} {variant} {minutes:g} min: {r['psnr']:.2f} dB / {r['ssim']:.3f}, "
                      f"{r['render_s']:.2f} s per render", flush=True)
    path = dated("capture-training", "md")
    new = not path.exists()
    with path.open("a") as f:
        if new:
            f.write("# Real captures with the plain command, " + path.stem[-10:] + "\n\n"
                    "Each row: one `train-scene --data CAPTURE train.max_minutes=M` run (plus the option named in "
                    "the variant column), then its own evaluation on the held-out frames (every 8th), at the "
                    "training resolution of `configs/colmap.yaml` / `transforms.yaml`. render s: median "
                    "seconds to render one held-out frame; eval s/frame: the evaluation's seconds per frame (render, "
                    "scoring, PNGs).\n\n"
                    "| capture | variant | minutes | steps | PSNR | SSIM | views | size | render s | eval s/frame | commit "
                    "| load at start |\n"
                    "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | --- |\n")
        for r in rows:
            f.write(f"| {r['capture']} | {r['variant']} | {r['minutes']:g} | {r['step']} | {r['psnr']:.2f} | "
                    f"{r['ssim']:.3f} | {r['views']} | {r['size']} | {r['render_s']:.2f} | {r['s_per_frame']:.2f} | "
                    f"{r['machine']['commit']} | "
                    f"{r['machine']['load_avg_1min']:.1f} |\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
