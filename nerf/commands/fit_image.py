"""fit-image: fit an image with a coordinate network (the INR side tool) and compare encodings."""
from __future__ import annotations

import time
from pathlib import Path

from nerf.commands.common import OneLineParser, add_common_flags, printer, run_command
from nerf.errors import UserError

# flag -> settings key; a flag given on the command line is an override of that key
FLAGS = {"steps": int, "downscale": int, "width": int, "depth": int, "lr": float, "siren_lr": float,
         "pos_freqs": int, "features": int, "sigma": float, "omega0": float, "eval_every": int}


def fit(argv: list[str]) -> int:
    from nerf.inr.fit_image import ENCODINGS, FitSettings

    d = FitSettings()
    p = OneLineParser(
        prog="fit-image",
        description="Fit an image with a coordinate network f(x, y) -> RGB, trained on every other pixel in each "
                    "direction; report PSNR on the held-out pixels and render the fit at 1x, 2x and 4x.",
        epilog="Settings come from --config FILE and KEY=VALUE overrides (keys: steps, lr, siren_lr, width, depth, "
               "pos_freqs, features, sigma, omega0, downscale, eval_every, log_every, seed, chunk); the flags below "
               "are shortcuts for them. Outputs: DIR/metrics.json (keyed by encoding), DIR/table.md, "
               "DIR/comparison.png, and per encoding DIR/<encoding>/ with TensorBoard events and render_{1,2,4}x.png.",
    )
    p.add_argument("image", help="an image file (PNG, JPEG, ...); RGBA is composited over white")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="settings overrides")
    p.add_argument("--config", help="YAML settings file (keys as above)")
    p.add_argument("--encoding", default="gaussian", choices=[*ENCODINGS, "all"],
                   help="input encoding, or all to compare every one (default: gaussian)")
    p.add_argument("--out", help="output folder (default: runs/fit-<image>-<time>)")
    p.add_argument("--steps", type=int, help=f"full-batch Adam steps (default {d.steps})")
    p.add_argument("--downscale", type=int, help="area-downscale the image by K first (default 1)")
    p.add_argument("--width", type=int, help=f"hidden width (default {d.width})")
    p.add_argument("--depth", type=int, help=f"hidden layers (default {d.depth})")
    p.add_argument("--lr", type=float, help=f"Adam rate of the ReLU networks (default {d.lr})")
    p.add_argument("--siren-lr", type=float, help=f"Adam rate of SIREN (default {d.siren_lr})")
    p.add_argument("--pos-freqs", type=int, help=f"positional encoding frequencies 2^0..2^(L-1) (default {d.pos_freqs})")
    p.add_argument("--features", type=int, help=f"Gaussian features (default {d.features})")
    p.add_argument("--sigma", type=float,
                   help=f"Gaussian feature scale, cycles per unit; the longer image side spans [-1, 1] (default {d.sigma})")
    p.add_argument("--omega0", type=float, help=f"SIREN omega_0 (default {d.omega0})")
    p.add_argument("--eval-every", type=int, help="held-out PSNR logging interval")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default 0: torch's choice)")
    add_common_flags(p)
    a = p.parse_intermixed_args(argv)
    import torch

    from nerf.inr.fit_image import SCHEMA, fit_image, results_table
    from nerf.settings import load_settings

    if a.threads < 0:
        raise UserError(f"--threads: must be >= 0, got {a.threads}")
    if a.threads:
        torch.set_num_threads(a.threads)
    image = Path(a.image)
    if not image.is_file():
        raise UserError(f"{image}: image file not found")
    overrides = list(a.overrides) + [f"{k}={getattr(a, k)}" for k in FLAGS if getattr(a, k) is not None]
    if a.seed is not None:
        overrides.append(f"seed={a.seed}")
    s = load_settings(SCHEMA, a.config, overrides)
    encodings = list(ENCODINGS) if a.encoding == "all" else [a.encoding]
    out = Path(a.out) if a.out else Path("runs") / f"fit-{image.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    log = printer(a.quiet)
    metrics = fit_image(image, encodings, out, s, log=log)
    log(results_table(metrics), end="")
    log(f"outputs in {out}/ (metrics.json, table.md, comparison.png, <encoding>/render_{{1,2,4}}x.png)\n"
        f"  watch:  tensorboard --logdir {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("fit-image", fit, argv)
