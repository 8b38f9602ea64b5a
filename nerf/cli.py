"""Console entry points: train-scene, eval-scene, render-video.

Every command prints bad input as one line naming the file or option and exits with status 2
(`--debug` shows the traceback instead); an interrupted training run saves a checkpoint first.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from nerf.allocator import keep_freed_memory
from nerf.errors import USER_ERRORS, UserError

INTERRUPTED_EXIT = {2: 130, 15: 143}  # SIGINT, SIGTERM -> the shell's conventional codes


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (plus a pointer to --help), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_command(prog: str, fn, argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    keep_freed_memory()
    debug = "--debug" in argv
    try:
        return fn(argv) or 0
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="random seed (sets train.seed; default from the config)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (auto: CUDA when available, else CPU)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def _device(name: str) -> torch.device:
    from nerf.runs import pick_device

    if name == "auto":
        return pick_device()
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def _default_config(data: str | None, fmt: str | None = None, method: str | None = None) -> str | None:
    """The config used when --config is absent: for the built-in scene builtin.yaml, else
    configs/<format>.yaml for the detected (or `fmt`, a data.format override) format; with a
    `method` (a model.method override) configs/<base>_<method>.yaml when it exists (e.g.
    blender_fast.yaml, builtin_nerf.yaml); else the paper defaults."""
    from datasets.registry import detect_format
    from nerf.config import CONFIG_DIR

    if data is None:
        base = "builtin"
    else:
        root = Path(data).expanduser()
        if not root.is_dir():
            return None  # the loader reports the missing folder
        base = detect_format(root) if fmt in (None, "auto") else fmt
    for name in ([f"{base}_{method}"] if method else []) + [base]:
        cand = CONFIG_DIR / f"{name}.yaml"
        if cand.is_file():
            return str(cand)
    return None


# ---------------------------------------------------------------------------------------------- train

def _train(argv: list[str]) -> int:
    p = OneLineParser(
        prog="train-scene",
        description="Train a radiance field on a folder of posed images (the built-in scene when --data is absent), "
                    "log to TensorBoard, checkpoint, and score the result on the test split.",
        epilog="Overrides are KEY=VALUE, e.g. data.downscale=4 model.method=nerf train.max_steps=2000 "
               "train.max_minutes=30. Run folder: config.yaml, checkpoints/, events.out.tfevents.*, metrics.json, renders/.",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--data", help="scene folder (Blender transforms_*.json, LLFF poses_bounds.npy, Instant-NGP/"
                                  "nerfstudio transforms.json, COLMAP sparse model); default: the built-in scene")
    p.add_argument("--config", help="YAML config file, or the name of one in configs/ (e.g. blender_quarter)")
    p.add_argument("--out", help="run folder (default: runs/<scene>-<method>-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation on the test split")
    p.add_argument("--init", help="start from a learned initialisation written by meta-train")
    _common(p)
    a = p.parse_intermixed_args(argv)  # KEY=VALUE overrides may stand anywhere

    from nerf.config import load_config, read_yaml
    from nerf.eval_run import evaluate_run
    from nerf.trainer import Trainer

    if a.resume and not a.out:
        raise UserError("--resume: needs --out RUN_DIR naming the run to continue")
    if a.init and a.resume:
        raise UserError("--init: cannot be combined with --resume (the run continues from its checkpoint)")
    overrides = list(a.overrides)
    if a.data is not None:
        overrides.insert(0, f"data.path={a.data}")
    if a.seed is not None:
        overrides.append(f"train.seed={a.seed}")
    base = None
    if a.resume and (Path(a.out) / "config.yaml").is_file():
        base = read_yaml(Path(a.out) / "config.yaml")
        config_file = a.config
    else:
        fmt = next((o.split("=", 1)[1] for o in overrides if o.startswith("data.format=")), None)
        method = next((o.split("=", 1)[1] for o in overrides if o.startswith("model.method=")), None)
        config_file = a.config or _default_config(a.data, fmt, method)
    cfg = load_config(config_file, overrides, base=base)
    if a.out:
        run_dir = Path(a.out)
    else:
        scene = Path(cfg.data.path).name if cfg.data.path else "builtin"
        run_dir = Path("runs") / f"{scene}-{cfg.model.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    device = _device(a.device)
    log = (lambda *x: None) if a.quiet else print

    trainer = Trainer(cfg, run_dir, device, resume=a.resume, overwrite=a.overwrite, log=print,
                      show_progress=not a.quiet, init_file=a.init)
    print(f"train-scene: {cfg.model.method} on {cfg.data.path or 'the built-in scene'} -> {run_dir} ({device})")
    result = trainer.train()
    if result.interrupted_by is not None:
        print(f"train-scene: stopped by signal {result.interrupted_by} at step {result.step}; checkpoint saved. "
              f"Continue with: train-scene --out {run_dir} --resume", file=sys.stderr)
        return INTERRUPTED_EXIT.get(result.interrupted_by, 1)
    log(f"trained {result.step} steps in {result.train_seconds / 60:.1f} min")
    if not a.no_eval:
        evaluate_run(run_dir, cfg, trainer.model, result.step, trainer.info, cfg.eval.split, cfg.eval.max_views,
                     show_progress=not a.quiet, log=print)
    print(f"outputs in {run_dir}/ (config.yaml, checkpoints/, metrics.json, renders/)\n"
          f"  watch:  tensorboard --logdir {run_dir}\n"
          f"  score:  eval-scene {run_dir}\n"
          f"  video:  render-video {run_dir}")
    return 0


# ----------------------------------------------------------------------------------------------- eval

def _eval(argv: list[str]) -> int:
    p = OneLineParser(prog="eval-scene", description="Score a trained run on a split: mean PSNR and SSIM into "
                      "RUN_DIR/metrics.json, per-image figures, and the renders as PNG in RUN_DIR/renders/<split>/.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to score")
    p.add_argument("--max-views", type=int, default=0, help="score N evenly spaced views (default 0: all)")
    p.add_argument("--data", help="the scene folder, if it moved since training")
    _common(p)
    a = p.parse_args(argv)
    if a.max_views < 0:
        raise UserError(f"--max-views: must be >= 0, got {a.max_views}")
    from nerf.eval_run import evaluate_run
    from nerf.models import SceneInfo
    from nerf.runs import load_run_config, load_trained_model

    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, [f"data.path={a.data}"] if a.data else [])
    if a.seed is not None:
        torch.manual_seed(a.seed)
    model, step, scene_json = load_trained_model(run_dir, cfg, _device(a.device))
    evaluate_run(run_dir, cfg, model, step, SceneInfo(**scene_json["info"]), a.split, a.max_views,
                 show_progress=not a.quiet)
    return 0


# ---------------------------------------------------------------------------------------------- video

def _video(argv: list[str]) -> int:
    p = OneLineParser(prog="render-video", description="Render a trained run along a novel-view camera path to "
                      "RUN_DIR/videos/rgb.mp4 and RUN_DIR/videos/depth.mp4.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--frames", type=int, default=None, help="number of frames (default: video.frames, 120)")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: video.fps, 30)")
    p.add_argument("--downscale", type=int, default=None, help="divide the training image size by K (default 1)")
    p.add_argument("--path", choices=["auto", "orbit", "spherical", "spiral"], default=None,
                   help="camera path (auto: the Blender 360 path for Blender scenes, the spiral for forward-facing "
                        "LLFF scenes, else an orbit of the training cameras)")
    _common(p)
    a = p.parse_args(argv)
    from nerf.runs import load_run_config, load_trained_model
    from nerf.video_run import render_video

    overrides = [f"video.{k}={v}" for k, v in (("frames", a.frames), ("fps", a.fps), ("downscale", a.downscale),
                                                 ("path", a.path)) if v is not None]
    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir, overrides)
    if a.seed is not None:
        torch.manual_seed(a.seed)
    model, step, scene_json = load_trained_model(run_dir, cfg, _device(a.device))
    v = cfg.video
    t0 = time.perf_counter()
    rgb, depth = render_video(run_dir, model, scene_json, v.frames, v.fps, v.downscale, v.path, cfg.render.chunk,
                              show_progress=not a.quiet)
    dt = time.perf_counter() - t0
    print(f"render-video: {v.frames} frames in {dt:.1f} s ({dt / v.frames:.2f} s/frame) -> {rgb}, {depth}")
    return 0


def train_scene_main(argv: list[str] | None = None) -> int:
    return run_command("train-scene", _train, argv)


def eval_scene_main(argv: list[str] | None = None) -> int:
    return run_command("eval-scene", _eval, argv)


def render_video_main(argv: list[str] | None = None) -> int:
    return run_command("render-video", _video, argv)


from nerf.cli_inr import fit_image_main, meta_train_main  # noqa: E402 (cli_inr uses the helpers above)

COMMANDS = {"train-scene": train_scene_main, "eval-scene": eval_scene_main, "render-video": render_video_main,
            "fit-image": fit_image_main, "meta-train": meta_train_main}
