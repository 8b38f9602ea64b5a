"""eval-scene: score a trained run on a split (PSNR, SSIM, renders as PNG)."""
from __future__ import annotations

from pathlib import Path

import torch

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command
from nerf.errors import UserError


def evaluate(argv: list[str]) -> int:
    p = OneLineParser(prog="eval-scene", description="Score a trained run on a split: mean PSNR and SSIM into "
                      "RUN_DIR/metrics.json, per-image figures, and the renders as PNG in RUN_DIR/renders/<split>/.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to score")
    p.add_argument("--max-views", type=int, default=0, help="score N evenly spaced views (default 0: all)")
    p.add_argument("--data", help="the scene folder, if it moved since training")
    p.add_argument("--fit-appearance", action="store_true",
                   help="runs with appearance codes: also fit each view's code on its left half and score both codes "
                        "on the right half")
    add_common_flags(p)
    a = p.parse_args(argv)
    if a.max_views < 0:
        raise UserError(f"--max-views: must be >= 0, got {a.max_views}")
    from nerf.inference.evaluation import evaluate_run
    from nerf.runs.run_folder import load_run_config, load_trained_model
    from nerf.scene_rays import SceneInfo
    from nerf.training import distributed

    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, [f"data.path={a.data}"] if a.data else [])
    if a.seed is not None:
        torch.manual_seed(a.seed)
    ranks, device = distributed.init(pick_device(a.device))  # under torchrun the views are split among the ranks
    model, step, scene_json = load_trained_model(run_dir, cfg, device)
    evaluate_run(run_dir, cfg, model, step, SceneInfo(**scene_json["info"]), a.split, a.max_views,
                 show_progress=not a.quiet, log=printer(a.quiet or not ranks.writer),
                 ranks=ranks if ranks.active else None, fit_appearance=a.fit_appearance)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("eval-scene", evaluate, argv)
