"""Console entry points of the INR tools: fit-image (image regression) and meta-train (Reptile).

Registered in nerf.cli.COMMANDS (for `python -m nerf ...`) and in pyproject's [project.scripts].
"""
from __future__ import annotations

import time
from pathlib import Path

from nerf.cli import OneLineParser, _common, run_command
from nerf.errors import UserError


# ------------------------------------------------------------------------------------------ fit-image

def _fit_image(argv: list[str]) -> int:
    from nerf.fit_image import ENCODINGS, FitSettings

    d = FitSettings()
    p = OneLineParser(
        prog="fit-image",
        description="Fit an image with a coordinate network f(x, y) -> RGB, trained on every other pixel in each "
                    "direction; report PSNR on the held-out pixels and render the fit at 1x, 2x and 4x.",
        epilog="Outputs: DIR/metrics.json (keyed by encoding), DIR/table.md, DIR/comparison.png, and per encoding "
               "DIR/<encoding>/ with TensorBoard events and render_{1,2,4}x.png.",
    )
    p.add_argument("image", help="an image file (PNG, JPEG, ...); RGBA is composited over white")
    p.add_argument("--encoding", default="gaussian", choices=[*ENCODINGS, "all"],
                   help="input encoding, or all to compare every one (default: gaussian)")
    p.add_argument("--out", help="output folder (default: runs/fit-<image>-<time>)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"full-batch Adam steps (default {d.steps})")
    p.add_argument("--downscale", type=int, default=d.downscale, help="area-downscale the image by K first (default 1)")
    p.add_argument("--width", type=int, default=d.width, help=f"hidden width (default {d.width})")
    p.add_argument("--depth", type=int, default=d.depth, help=f"hidden layers (default {d.depth})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam rate of the ReLU networks (default {d.lr})")
    p.add_argument("--siren-lr", type=float, default=d.siren_lr, help=f"Adam rate of SIREN (default {d.siren_lr})")
    p.add_argument("--pos-freqs", type=int, default=d.pos_freqs,
                   help=f"positional encoding frequencies 2^0..2^(L-1) (default {d.pos_freqs})")
    p.add_argument("--features", type=int, default=d.features, help=f"Gaussian features (default {d.features})")
    p.add_argument("--sigma", type=float, default=d.sigma,
                   help=f"Gaussian feature scale, cycles per unit; the longer image side spans [-1, 1] (default {d.sigma})")
    p.add_argument("--omega0", type=float, default=d.omega0, help=f"SIREN omega_0 (default {d.omega0})")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="held-out PSNR logging interval")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    _common(p)
    a = p.parse_args(argv)
    import torch

    from nerf.fit_image import fit_image, results_table

    if a.threads < 0:
        raise UserError(f"--threads: must be >= 0, got {a.threads}")
    if a.threads:
        torch.set_num_threads(a.threads)
    image = Path(a.image)
    if not image.is_file():
        raise UserError(f"{image}: image file not found")
    s = FitSettings(steps=a.steps, lr=a.lr, siren_lr=a.siren_lr, width=a.width, depth=a.depth,
                    pos_freqs=a.pos_freqs, features=a.features, sigma=a.sigma, omega0=a.omega0,
                    downscale=a.downscale, eval_every=a.eval_every, seed=a.seed if a.seed is not None else 0)
    encodings = list(ENCODINGS) if a.encoding == "all" else [a.encoding]
    out = Path(a.out) if a.out else Path("runs") / f"fit-{image.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    metrics = fit_image(image, encodings, out, s, log=(lambda *x: None) if a.quiet else print)
    print(results_table(metrics), end="")
    print(f"outputs in {out}/ (metrics.json, table.md, comparison.png, <encoding>/render_{{1,2,4}}x.png)\n"
          f"  watch:  tensorboard --logdir {out}")
    return 0


def fit_image_main(argv: list[str] | None = None) -> int:
    return run_command("fit-image", _fit_image, argv)


# ----------------------------------------------------------------------------------------- meta-train

def _meta_train(argv: list[str]) -> int:
    from nerf.meta import MetaSettings

    d = MetaSettings()
    p = OneLineParser(
        prog="meta-train",
        description="Learn a NeRF initialisation with Reptile over the built-in scene family (the procedural "
                    "scene with shapes drawn from each seed) and write it to a file for train-scene --init.",
        epilog="Overrides are KEY=VALUE config keys (model.*, train.lr, train.batch_rays, data.synthetic.*); the "
               "inner loop uses train.lr and train.batch_rays. Default config: configs/meta_builtin.yaml.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--config", help="YAML config file, or the name of one in configs/ (default: meta_builtin)")
    p.add_argument("--out", required=True, help="the init file to write (e.g. runs/meta_init.pt)")
    p.add_argument("--meta-steps", type=int, default=d.meta_steps, help=f"Reptile steps (default {d.meta_steps})")
    p.add_argument("--inner-steps", type=int, default=d.inner_steps,
                   help=f"training steps on a scene per Reptile step (default {d.inner_steps})")
    p.add_argument("--outer-lr", type=float, default=d.outer_lr,
                   help=f"fraction of the way the init moves toward the adapted weights (default {d.outer_lr})")
    p.add_argument("--no-anneal", action="store_true", help="keep --outer-lr constant instead of decaying it to 0")
    p.add_argument("--tasks", type=int, default=d.n_tasks, help=f"number of training scenes (default {d.n_tasks})")
    p.add_argument("--first-seed", type=int, default=d.first_seed,
                   help=f"training scenes are seeds first..first+tasks-1 (default {d.first_seed})")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this long (default 0: no limit)")
    p.add_argument("--from", dest="start_from", metavar="FILE",
                   help="continue meta-training from an init file written by meta-train (same config)")
    _common(p)
    a = p.parse_intermixed_args(argv)
    import json

    from nerf.cli import _device
    from nerf.config import CONFIG_DIR, load_config
    from nerf.meta import meta_train, save_init

    overrides = list(a.overrides)
    if a.seed is not None:
        overrides.append(f"train.seed={a.seed}")
    cfg = load_config(a.config or str(CONFIG_DIR / "meta_builtin.yaml"), overrides)
    if cfg.train.threads:
        import torch

        torch.set_num_threads(cfg.train.threads)
    ms = MetaSettings(meta_steps=a.meta_steps, inner_steps=a.inner_steps, outer_lr=a.outer_lr, anneal=not a.no_anneal,
                      n_tasks=a.tasks, first_seed=a.first_seed, minutes=a.minutes)
    out = Path(a.out)
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; name the init file to write")
    model, summary = meta_train(cfg, ms, _device(a.device), log=(lambda *x: None) if a.quiet else print,
                                start_from=a.start_from)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_init(out, model, cfg, summary)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    print(f"meta-train: {summary['meta_steps_done']} Reptile steps in {summary['seconds']:.0f} s "
          f"({summary['total_meta_steps']} in all) -> {out} "
          f"(history in {out.with_suffix('.json')})\n  use:  train-scene data.synthetic.seed=N --init {out} --config "
          f"{a.config or 'meta_builtin'}")
    return 0


def meta_train_main(argv: list[str] | None = None) -> int:
    return run_command("meta-train", _meta_train, argv)
