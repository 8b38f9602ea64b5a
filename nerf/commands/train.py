"""train-scene: train a radiance field on a folder of posed images (the built-in scene by default)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nerf.commands.allocator import return_freed_memory
from nerf.commands.common import (
    OneLineParser,
    add_common_flags,
    default_config,
    override_value,
    pick_device,
    printer,
    run_command,
)
from nerf.errors import UserError

INTERRUPTED_EXIT = {2: 130, 15: 143}  # SIGINT, SIGTERM -> the shell's conventional codes


def train(argv: list[str]) -> int:
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
    p.add_argument("--showcase", action=argparse.BooleanOptionalAction, default=None,
                   help="end with a contact sheet of the test views (renders/contact_sheet.png) and a turntable "
                        "video (videos/turntable.mp4); default: on for the built-in scene")
    p.add_argument("--viewer", action="store_true",
                   help="serve the web viewer (as view-scene) on the run while it trains; it renders between steps")
    p.add_argument("--viewer-port", type=int, default=8080, help="the viewer's port (default 8080)")
    p.add_argument("--viewer-host", default="127.0.0.1", help="the viewer's address (default 127.0.0.1)")
    p.add_argument("--viewer-share", type=float, default=0.25,
                   help="at most this share of the wall clock goes to rendering for the viewer (default 0.25)")
    add_common_flags(p)
    a = p.parse_intermixed_args(argv)  # KEY=VALUE overrides may stand anywhere

    from nerf.config import load_config, read_run_yaml
    from nerf.inference.evaluation import evaluate_run
    from nerf.training import distributed
    from nerf.training.trainer import Trainer

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
        base = read_run_yaml(Path(a.out) / "config.yaml")
        config_file = a.config
    else:
        fmt, method = override_value(overrides, "data.format"), override_value(overrides, "model.method")
        config_file = a.config or default_config(a.data, fmt, method)
    cfg = load_config(config_file, overrides, base=base)
    if a.out:
        run_dir = Path(a.out)
    else:
        scene = Path(cfg.data.path).name if cfg.data.path else "builtin"
        run_dir = Path("runs") / f"{scene}-{cfg.model.method}-{time.strftime('%Y%m%d-%H%M%S')}"
    ranks, device = distributed.init(pick_device(a.device))  # a torchrun job when its environment names one
    run_dir = distributed.from_rank0(ranks, lambda: run_dir)  # rank 0's: the default name holds the time
    log = printer(a.quiet or not ranks.writer)

    if a.viewer:
        from nerf.viewer.server import check_port

        if not 0 < a.viewer_share <= 1:
            raise UserError(f"--viewer-share: must be in (0, 1], got {a.viewer_share}")
        check_port(a.viewer_host, a.viewer_port, "--viewer-port")  # before any data loads
    trainer = Trainer(cfg, run_dir, device, resume=a.resume, overwrite=a.overwrite, log=log,
                      show_progress=not a.quiet and ranks.writer, init_file=a.init, ranks=ranks)
    log(f"train-scene: {cfg.model.method} on {cfg.data.path or 'the built-in scene'} -> {run_dir} ({device})")
    viewer = start_viewer(trainer, a, log) if a.viewer and ranks.writer else None
    again = f"torchrun --nproc-per-node={ranks.local_world} -m nerf train-scene" if ranks.active else "train-scene"
    try:
        result = trainer.train()
    except distributed.RankLost as exc:  # another process of the job died: stop with one line
        print(f"train-scene: error: {exc}. Continue with: {again} --out {run_dir} --resume", file=sys.stderr)
        return 1
    finally:
        if viewer is not None:
            viewer.close()
    if result.interrupted_by is not None:
        if ranks.writer:
            print(f"train-scene: stopped by signal {result.interrupted_by} at step {result.step}; checkpoint saved. "
                  f"Continue with: {again} --out {run_dir} --resume", file=sys.stderr)
        return INTERRUPTED_EXIT.get(result.interrupted_by, 1)
    log(f"trained {result.step} steps in {result.train_seconds / 60:.1f} min")
    trainer.release_images()
    return_freed_memory()  # the freed training images stay resident otherwise (commands/allocator.py)
    if not a.no_eval:
        evaluate_run(run_dir, cfg, trainer.model, result.step, trainer.info, cfg.eval.split, cfg.eval.max_views,
                     show_progress=not a.quiet, log=log, ranks=ranks if ranks.active else None)
    showcase = a.showcase if a.showcase is not None else cfg.data.path is None
    if showcase and ranks.writer:
        from nerf.inference.showcase import write_showcase

        video, sheet = write_showcase(run_dir, cfg, trainer.model, show_progress=not a.quiet)
        log(f"look:  {sheet} (test views: render | truth)\n       {video} (turntable)")
    log(f"outputs in {run_dir}/ (config.yaml, checkpoints/, metrics.json, renders/, videos/)\n"
        f"  watch:  tensorboard --logdir {run_dir}\n"
        f"  score:  eval-scene {run_dir}\n"
        f"  video:  render-video {run_dir}")
    return 0


def start_viewer(trainer, a, log):
    """The viewer on the run being trained: it renders between steps, within its share of the time."""
    from nerf.inference.video import training_cameras
    from nerf.runs.run_folder import read_scene_json
    from nerf.viewer.server import SceneViewer

    cameras = training_cameras(read_scene_json(trainer.run_dir), trainer.run_dir)
    viewer = SceneViewer(trainer.model, trainer.info, cameras, trainer.run_dir, trainer.cfg.render.chunk, a.viewer_host,
                         a.viewer_port, photos=trainer.scene.images, image_names=trainer.scene.image_names, live=True,
                         share=a.viewer_share, log=log)
    trainer.on_step.append(viewer.poll)
    log(f"train-scene: viewer at {viewer.url} (rendering at most {a.viewer_share:.0%} of the time)")
    return viewer


def main(argv: list[str] | None = None) -> int:
    return run_command("train-scene", train, argv)
