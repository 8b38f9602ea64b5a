"""Does a highlight spoil the geometry? A test of the gloss variant's gap on the built-in scene.

The plain scene is trained first (the no-argument config, --steps steps). Its model then trains
on the gloss variant's views for as many steps again, two ways: everything trainable ("free"),
and with the grid and the density head frozen so that only the colour head learns ("colour
only": the plain model's geometry and features, the highlight left to the view-dependent head).
Each model is scored on the gloss test views: PSNR and depth error against the exact depth. If
the free run's depth gets worse while it learns the highlight, the highlight is being fitted with
density; if the colour-only run matches it, the head has the capacity and the geometry is what
goes wrong.

    python benchmarks/gloss_geometry.py --steps 500

Writes benchmarks/results/gloss_geometry-<date>.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import dated, machine, write_json  # noqa: E402
from nerf.config import load_config  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402
from nerf.inference.views import score_views  # noqa: E402
from nerf.training.trainer import Trainer  # noqa: E402


def config(steps: int, seed: int, extra: list[str]):
    return load_config("builtin", extra + [f"train.max_steps={steps}", "train.max_minutes=0", f"train.seed={seed}",
                                           "train.eval_every=0"])


def score(tr, cfg) -> dict:
    res = score_views(tr.model, load_scene(cfg.data, "test"), tr.info, cfg.render.chunk)
    return {"psnr": res["psnr"], "ssim": res["ssim"], "depth_mae": res["depth_mae"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--gloss", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    gloss = [f"data.synthetic.gloss={a.gloss}"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain_cfg = config(a.steps, a.seed, [])
        plain = Trainer(plain_cfg, Path(tmp) / "plain", torch.device("cpu"), log=lambda *x: None, show_progress=False)
        plain.train()
        gloss_cfg = config(a.steps, a.seed, gloss)
        rows["plain model on the plain views"] = score(plain, plain_cfg)
        rows["plain model on the gloss views"] = score(plain, gloss_cfg)
        # the second stage starts at the plain run's final grid, so no coarse-to-fine schedule
        second = config(a.steps, a.seed, gloss + ["model.fast.grid_res_start=0"])
        for name, frozen in (("free", False), ("colour only", True)):
            tr = Trainer(second, Path(tmp) / name.replace(" ", "_"), torch.device("cpu"), log=lambda *x: None,
                         show_progress=False)
            tr.model.load_state_dict(plain.model.state_dict())
            if frozen:
                field = tr.model.field
                for prm in list(field.encoding.parameters()) + list(field.density_mlp.parameters()):
                    prm.requires_grad_(False)
            t0 = time.perf_counter()
            tr.train()
            rows[f"then {a.steps} gloss steps, {name}"] = {**score(tr, gloss_cfg), "seconds": time.perf_counter() - t0}
        scratch = Trainer(gloss_cfg, Path(tmp) / "scratch", torch.device("cpu"), log=lambda *x: None,
                          show_progress=False)
        scratch.train()
        rows[f"gloss from scratch, {a.steps} steps"] = score(scratch, gloss_cfg)
    print("\n| model | PSNR (dB) | SSIM | depth error |\n| --- | ---: | ---: | ---: |")
    for name, r in rows.items():
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['depth_mae']:.4f} |")
    write_json(dated("gloss_geometry", "json"), {"steps": a.steps, "gloss": a.gloss, "seed": a.seed,
                                                 "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
