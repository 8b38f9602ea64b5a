"""The built-in scene's material and shape variants against the plain scene at the same budget.

Each variant (data.synthetic.gloss, metal, rods, grille, glass) is trained with the no-argument
config (configs/builtin.yaml) for the same number of steps as the plain scene, then scored on
all test views: PSNR, SSIM, and, for the thin rods, how opaque the render is where the truth
is (the rods must not be see-through). Steps, not minutes, make the budget, so a busy machine
changes the time, not the figures.

    python benchmarks/builtin_variants.py --steps 500 --tag default
    python benchmarks/builtin_variants.py --steps 500 --tag try1 model.fast.sh_degree=4 ...

Two diagnoses: --train-views also scores the training views (how well the field fits what it saw,
against how well it carries that to new views); --supersample K also scores each test view
rendered with KxK rays per pixel and area-averaged, as the truth is made; --split-error splits
each variant's squared error between the pixels where its truth differs from the plain scene's
(the highlight, the rods, the bars) and the rest.

Writes benchmarks/results/builtin_variants_<tag>-<date>.json and prints a Markdown table.
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
from nerf.inference.views import render_view, score_views  # noqa: E402
from nerf.metrics import psnr, psnr_from_mse  # noqa: E402
from nerf.training.trainer import Trainer  # noqa: E402

VARIANTS = {
    "plain": [],
    "gloss": ["data.synthetic.gloss=0.6"],
    "metal": ["data.synthetic.metal=true"],
    "rods": ["data.synthetic.rods=8"],
    "grille": ["data.synthetic.grille=true"],
    "glass": ["data.synthetic.glass=0.5"],
}


def supersampled_psnr(model, scene, info, chunk: int, k: int) -> float:
    """Mean PSNR of the views rendered at k times the resolution and area-averaged back: KxK rays
    per pixel, as the built-in truth is made."""
    vals = []
    for i in range(len(scene)):
        rgb = render_view(model, scene.cameras, i, info, chunk, scale=k)["rgb"]
        small = torch.nn.functional.avg_pool2d(rgb.permute(2, 0, 1)[None], k)[0].permute(1, 2, 0)
        vals.append(psnr(small, scene.images[i]))
    return sum(vals) / len(vals)


def split_error(renders: list[torch.Tensor], scene, plain, tol: float = 0.02) -> dict:
    """PSNR of the renders (rgb per view) on the pixels where the variant's truth differs from the
    plain scene's by more than `tol` in some channel and on the rest, and the share of the squared
    error the first hold."""
    err_in = err_out = 0.0
    n_in = n_out = 0
    for i, rgb in enumerate(renders):
        sq = (rgb.float().clamp(0, 1) - scene.images[i]).square().mean(-1)
        changed = (scene.images[i] - plain.images[i]).abs().amax(-1) > tol
        err_in, n_in = err_in + float(sq[changed].sum()), n_in + int(changed.sum())
        err_out, n_out = err_out + float(sq[~changed].sum()), n_out + int((~changed).sum())
    return {"changed_pixels": n_in / (n_in + n_out), "psnr_changed": psnr_from_mse(err_in / max(n_in, 1)),
            "psnr_unchanged": psnr_from_mse(err_out / max(n_out, 1)), "error_share_changed": err_in / (err_in + err_out)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="config overrides applied to every variant")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default="default")
    p.add_argument("--train-views", action="store_true", help="also score the training views")
    p.add_argument("--supersample", type=int, default=0, help="also score renders of KxK rays per pixel")
    p.add_argument("--split-error", action="store_true",
                   help="split the error between the pixels the variant changes and the rest")
    a = p.parse_args(argv)
    rows = {}
    for name in a.variants:
        over = VARIANTS[name] + list(a.overrides) + [f"train.max_steps={a.steps}", "train.max_minutes=0",
                                                    f"train.seed={a.seed}", "train.eval_every=0"]
        cfg = load_config("builtin", over)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            tr = Trainer(cfg, Path(tmp) / name, torch.device("cpu"), log=lambda *x: None, show_progress=False)
            tr.train()
            seconds = time.perf_counter() - t0
            test = load_scene(cfg.data, "test")
            renders = []  # each test view's render, kept for the figures below
            res = score_views(tr.model, test, tr.info, cfg.render.chunk,
                              on_view=lambda i, view, out, figures: renders.append(out))
            row = {"psnr": res["psnr"], "ssim": res["ssim"], "depth_mae": res.get("depth_mae"), "steps": tr.step,
                   "seconds": seconds}
            if a.train_views:
                train = load_scene(cfg.data, "train")
                row["train_psnr"] = score_views(tr.model, train, tr.info, cfg.render.chunk)["psnr"]
            plain = None
            if name != "plain" and (a.split_error or name == "rods"):
                plain = load_scene(load_config("builtin", over[len(VARIANTS[name]):]).data, "test")
            if a.split_error and plain is not None:
                row.update(split_error([out["rgb"] for out in renders], test, plain))
            if a.supersample > 1:
                row[f"psnr_ss{a.supersample}"] = supersampled_psnr(tr.model, test, tr.info, cfg.render.chunk,
                                                                   a.supersample)
            if name == "rods":
                vals = [out["opacity"][(test.alpha[i] > 0.5) & (plain.alpha[i] < 0.5)] for i, out in enumerate(renders)]
                row["rod_opacity"] = float(torch.cat(vals).mean())
        rows[name] = row
        shown = ("rod_", "train_", "psnr_", "changed_", "error_")
        extra = "".join(f"  {k} {v:.3f}" for k, v in row.items() if k.startswith(shown))
        print(f"{name:7s} {row['psnr']:6.2f} dB  SSIM {row['ssim']:.4f}  ({row['steps']} steps, {seconds:.0f} s)"
              + extra, flush=True)
    print("\n| variant | PSNR (dB) | SSIM | vs plain (dB) |\n| --- | ---: | ---: | ---: |")
    base = rows.get("plain", {}).get("psnr")
    for name, r in rows.items():
        diff = f"{r['psnr'] - base:+.2f}" if base is not None else "n/a"
        print(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.4f} | {diff} |")
    write_json(dated(f"builtin_variants_{a.tag}", "json"),
               {"steps": a.steps, "overrides": a.overrides, "seed": a.seed, "machine": machine(), "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
