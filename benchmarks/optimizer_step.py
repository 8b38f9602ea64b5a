"""How long one Adam update takes on the fast method's parameters (TensoRF planes and lines plus
the MLP heads of configs/blender_fast.yaml), for torch's three Adam implementations.

    python benchmarks/optimizer_step.py [--config blender_fast] [--steps 30] [--repeats 3]

Every parameter gets a dense random gradient (the grid entries a batch does not touch still get
their moments decayed and an update, as in training). Reports the median milliseconds per
`optimizer.step()` of each implementation over `repeats` interleaved rounds of `steps` steps, and
writes benchmarks/results/optimizer_step-<date>.json (today's date, YYYY-MM-DD).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, median, write_json  # noqa: E402
from nerf.config import load_config  # noqa: E402
from nerf.fields.grid_field import FastField  # noqa: E402
from nerf.fields.grids import build_encoding  # noqa: E402
from nerf.models.fast import resolve_encoding  # noqa: E402

IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="blender_fast")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    fc = resolve_encoding(load_config(a.config, []).model.fast, "linf")  # auto: as on a contracted capture
    field = FastField(build_encoding(fc, [[-1.5] * 3, [1.5] * 3]), fc.hidden, fc.geo_features, fc.colour_hidden,
                      fc.sh_degree)
    params = list(field.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    times = {name: [] for name in IMPLEMENTATIONS}
    for _ in range(a.repeats):  # interleaved, so a noisy spell on the shared machine hits all of them
        for name, kw in IMPLEMENTATIONS.items():
            opt = torch.optim.Adam(params, lr=1e-3, **kw)
            opt.step()  # creates the moment buffers
            for _ in range(a.steps):
                t0 = time.perf_counter()
                opt.step()
                times[name].append(time.perf_counter() - t0)
    n_params = sum(p.numel() for p in params)
    result = {"config": a.config, "parameters": n_params, "machine": machine(),
              "ms_per_step_median": {k: 1000 * median(v) for k, v in times.items()}}
    for k, v in result["ms_per_step_median"].items():
        print(f"{k:9s} {v:6.2f} ms per Adam step ({n_params / 1e6:.2f}M parameters)")
    write_json(dated("optimizer_step", "json"), result)


if __name__ == "__main__":
    main()
