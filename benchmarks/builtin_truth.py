"""How faithful the built-in scene's pixels are: each variant's test views generated with
`data.synthetic.supersample` = 1, 2, 4, scored against the same views at a reference supersampling
(default 8 rays per pixel side, a near-exact area average).

A pixel of the built-in views is the mean of supersample^2 rays. Where a part is thinner than a
pixel (the rods, the grille's bars), too few rays make that mean an aliased guess of what the
pixel covers, and a trained model is then scored against the guess. The 1-ray row is also what
the exact scene scores when rendered, as models are, through pixel centres.

    python benchmarks/builtin_truth.py

Writes benchmarks/results/builtin_truth-<date>.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.builtin_variants import VARIANTS  # noqa: E402
from benchmarks.common import dated, machine, write_json  # noqa: E402
from nerf.config import load_config  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402


def psnr(a, b) -> float:
    return -10.0 * math.log10(float(((a - b) ** 2).mean()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--levels", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--reference", type=int, default=8)
    a = p.parse_args(argv)
    rows = {}
    for name in a.variants:
        data = load_config("builtin", VARIANTS[name]).data

        def views(ss):
            return load_scene(dataclasses.replace(data, synthetic=dataclasses.replace(data.synthetic, supersample=ss)),
                              "test").images

        ref = views(a.reference)
        rows[name] = {str(ss): psnr(views(ss), ref) for ss in a.levels}
    head = " | ".join(f"{ss}x{ss} rays" for ss in a.levels)
    print(f"\n| variant | {head} |\n| --- |" + " ---: |" * len(a.levels))
    for name, r in rows.items():
        print(f"| {name} | " + " | ".join(f"{r[str(ss)]:.2f}" for ss in a.levels) + " |")
    path = dated("builtin_truth", "json")
    write_json(path, {"reference": a.reference, "machine": machine(), "variants": rows})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
