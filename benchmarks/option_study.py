"""One option against the defaults on one dataset at equal training time: `train-scene --data DATA
train.max_minutes=M COMMON VARIANT`, each variant in a fresh process, the variants taking turns for
`--reps` rounds, each scored by its own evaluation on every held-out view (metrics.json).

    python benchmarks/option_study.py --data ../shared/data/nerf_synthetic/lego --minutes 2 \
        --variant plain= --variant jitter=train.pixel_jitter=true --tag lego-jitter data.downscale=4

`--native-off NAME` adds a variant NAME: no overrides, the C kernels off (NERF_NATIVE=0 in its
environment), to weigh them at equal time.

Writes benchmarks/results/option-study-<tag>-<date>.json (every run) and prints a median table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.capture_training import train_and_score  # noqa: E402
from benchmarks.common import dated  # noqa: E402


def parse_variant(text: str) -> tuple[str, list[str]]:
    """NAME=OVERRIDE,OVERRIDE... (NAME= alone: no override)."""
    name, _, rest = text.partition("=")
    if not name:
        raise SystemExit(f"--variant {text!r}: expected NAME=OVERRIDES (comma-separated)")
    return name, [o for o in rest.split(",") if o]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="config overrides for every variant")
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--variant", action="append", required=True, help="NAME=OVERRIDE,OVERRIDE...")
    ap.add_argument("--reps", type=int, default=1, help="rounds of all variants in turn")
    ap.add_argument("--tag", required=True, help="names the record: option-study-<tag>-<date>.json")
    ap.add_argument("--out", type=Path, default=Path("/tmp/option_study"), help="run folders")
    ap.add_argument("--native-off", metavar="NAME", help="also a variant NAME with the C kernels off (NERF_NATIVE=0)")
    a = ap.parse_args(argv)
    variants = dict(parse_variant(v) for v in a.variant)
    if a.native_off:
        variants[a.native_off] = []
    path = dated(f"option-study-{a.tag}", "json")
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    for rep in range(a.reps):
        for name, extra in variants.items():
            over = list(a.overrides) + extra
            env = {"NERF_NATIVE": "0" if name == a.native_off else "1"}
            r = train_and_score(a.data, a.out / f"{a.tag}-{name}-{rep}", a.minutes, over, env)
            runs.append({"variant": name, "rep": rep, "data": str(a.data), "overrides": over, "env": env, **r})
            print(f"{name} rep {rep}: {r['step']} steps, {r['psnr']:.2f} dB / {r['ssim']:.4f}", flush=True)
            path.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=1))
    print("\n| variant | runs | steps | PSNR (median) | SSIM (median) |\n| --- | ---: | ---: | ---: | ---: |")
    for name in variants:
        mine = [r for r in runs if r["variant"] == name]
        print(f"| {name} | {len(mine)} | {statistics.median(r['step'] for r in mine):.0f} | "
              f"{statistics.median(r['psnr'] for r in mine):.2f} | {statistics.median(r['ssim'] for r in mine):.4f} |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
