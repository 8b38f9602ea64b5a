"""Dense voxel grid read: the project's stencil gather on a channel-last grid against
`F.grid_sample` on the same volume channel-first, forward and forward + backward.

Default shape: a 128^3 grid of 12 features (colmap.yaml's dense_res), 260k points spread over
it (about one training step's samples). Variants take turns; each figure is the median of the
rounds. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import machine, median  # noqa: E402
from nerf.fields.grids import DenseGrid  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--res", type=int, default=128)
    ap.add_argument("--features", type=int, default=12)
    ap.add_argument("--points", type=int, default=260_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    enc = DenseGrid(torch.tensor([[-2.0] * 3, [2.0] * 3]), a.res, a.features)
    vol = torch.nn.Parameter(enc.grid.detach().permute(3, 0, 1, 2)[None].contiguous())
    x = torch.rand(a.points, 3, generator=torch.Generator().manual_seed(0)) * 4 - 2

    def grid_sample(pts):
        g = enc.unit(pts) * 2 - 1
        return torch.nn.functional.grid_sample(vol, g.view(1, -1, 1, 1, 3), mode="bilinear",
                                               align_corners=True).view(a.features, -1).t()

    variants = {"F.grid_sample, channel-first": (grid_sample, vol), "stencil gather, channel-last": (enc, enc.grid)}
    diff = float((grid_sample(x) - enc(x)).abs().max().detach())
    times = {(v, m): [] for v in variants for m in ("forward", "forward + backward")}
    for _ in range(a.rounds):
        for name, (fn, param) in variants.items():
            t = time.perf_counter()
            with torch.no_grad():
                fn(x)
            times[(name, "forward")].append(time.perf_counter() - t)
            param.grad = None
            t = time.perf_counter()
            fn(x).sum().backward()
            times[(name, "forward + backward")].append(time.perf_counter() - t)
    m = machine()
    print(f"{a.res}^3 x {a.features} grid, {a.points} points, {a.threads} threads, {a.rounds} rounds; "
          f"{m['cpu']}; commit {m['commit']}; largest difference {diff:.1e}\n")
    print("| read | forward ms | forward + backward ms |\n| --- | ---: | ---: |")
    for name in variants:
        print(f"| {name} | {median(times[(name, 'forward')]) * 1e3:.1f} | "
              f"{median(times[(name, 'forward + backward')]) * 1e3:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
