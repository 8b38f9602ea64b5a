"""meta-train: learn a NeRF initialisation with Reptile over the built-in scene family."""
from __future__ import annotations

import json
from pathlib import Path

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command
from nerf.errors import UserError

# flag -> `meta.*` key; a flag given on the command line is an override of that key
FLAGS = {"meta_steps": "meta_steps", "inner_steps": "inner_steps", "outer_lr": "outer_lr", "tasks": "n_tasks",
         "first_seed": "first_seed", "minutes": "minutes"}


def meta_train_command(argv: list[str]) -> int:
    from nerf.inr.reptile import MetaConfig

    d = MetaConfig()
    p = OneLineParser(
        prog="meta-train",
        description="Learn a NeRF initialisation with Reptile over the built-in scene family (the procedural "
                    "scene with shapes drawn from each seed) and write it to a file for train-scene --init.",
        epilog="Overrides are KEY=VALUE config keys (meta.*, model.*, train.lr, train.batch_rays, data.synthetic.*); "
               "the inner loop uses train.lr and train.batch_rays; the flags below are shortcuts for meta.* keys. "
               "Default config: configs/meta_builtin.yaml.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--config", help="YAML config file, or the name of one in configs/ (default: meta_builtin)")
    p.add_argument("--out", required=True, help="the init file to write (e.g. runs/meta_init.pt)")
    p.add_argument("--meta-steps", type=int, help=f"Reptile steps (default {d.meta_steps})")
    p.add_argument("--inner-steps", type=int, help=f"training steps on a scene per Reptile step (default {d.inner_steps})")
    p.add_argument("--outer-lr", type=float,
                   help=f"fraction of the way the init moves toward the adapted weights (default {d.outer_lr})")
    p.add_argument("--no-anneal", action="store_true", help="keep --outer-lr constant instead of decaying it to 0")
    p.add_argument("--tasks", type=int, help=f"number of training scenes (default {d.n_tasks})")
    p.add_argument("--first-seed", type=int, help=f"training scenes are seeds first..first+tasks-1 (default {d.first_seed})")
    p.add_argument("--minutes", type=float, help="stop after this long (default 0: no limit)")
    p.add_argument("--from", dest="start_from", metavar="FILE",
                   help="continue meta-training from an init file written by meta-train (same config)")
    add_common_flags(p)
    a = p.parse_intermixed_args(argv)
    import torch

    from nerf.inr.reptile import load_meta_config, meta_train
    from nerf.runs.init_files import save_init

    overrides = list(a.overrides) + [f"meta.{k}={getattr(a, f)}" for f, k in FLAGS.items()
                                     if getattr(a, f) is not None]
    if a.no_anneal:
        overrides.append("meta.anneal=false")
    if a.seed is not None:
        overrides.append(f"train.seed={a.seed}")
    cfg = load_meta_config(a.config or "meta_builtin", overrides)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    out = Path(a.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; name the init file to write")
    log = printer(a.quiet)
    model, summary = meta_train(cfg, cfg.meta, pick_device(a.device), log=log, start_from=a.start_from)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_init(out, model, cfg, summary)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    log(f"meta-train: {summary['meta_steps_done']} Reptile steps in {summary['seconds']:.0f} s "
        f"({summary['total_meta_steps']} in all) -> {out} "
        f"(history in {out.with_suffix('.json')})\n  use:  train-scene data.synthetic.seed=N --init {out} --config "
        f"{a.config or 'meta_builtin'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("meta-train", meta_train_command, argv)
