"""view-scene: serve a trained run in the browser (viser): fly around it, look through the
training cameras, draw a camera path for render-video."""
from __future__ import annotations

import signal
import threading
from pathlib import Path

import torch

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command


def load_photos(cfg, n: int, log):
    """The training photos (n, H, W, 3) and names, in the order of the run's cameras, or (None, None)
    when the data cannot be read any more (the viewer then draws the cameras without them)."""
    from nerf.datasets import load_scene
    from nerf.errors import USER_ERRORS

    try:
        scene = load_scene(cfg.data, "train")
    except USER_ERRORS + (OSError,) as exc:
        log(f"view-scene: training photos not shown ({str(exc).splitlines()[0]})")
        return None, None
    if len(scene.images) != n:
        log(f"view-scene: training photos not shown ({cfg.data.path} now holds {len(scene.images)} training images, "
            f"the run has {n} cameras)")
        return None, None
    return scene.images, scene.image_names


def view(argv: list[str]) -> int:
    p = OneLineParser(prog="view-scene", description="Serve a trained run in the browser: the scene rendered at "
                      "the browser's camera (low resolution while it moves, full size when it stops), the training "
                      "cameras, the scene box, and camera paths saved as camera_path.json for render-video.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default 8080)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for every network)")
    add_common_flags(p)
    a = p.parse_args(argv)
    from nerf.inference.video import training_cameras
    from nerf.runs.run_folder import load_run_config, load_trained_model
    from nerf.scene_rays import SceneInfo
    from nerf.viewer.server import SceneViewer, check_port

    log = printer(a.quiet)
    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir)
    check_port(a.host, a.port)  # before the model loads: a busy port is said at once
    if a.seed is not None:
        torch.manual_seed(a.seed)
    model, step, scene_json = load_trained_model(run_dir, cfg, pick_device(a.device))
    cameras = training_cameras(scene_json, run_dir)
    photos, names = load_photos(cfg, len(cameras), log)
    viewer = SceneViewer(model, SceneInfo(**scene_json["info"]), cameras, run_dir, cfg.render.chunk, a.host, a.port,
                         photos=photos, image_names=names, log=log)
    viewer.step = step
    done = threading.Event()
    old = signal.signal(signal.SIGTERM, lambda *_: done.set())
    viewer.start()
    log(f"view-scene: {run_dir} (step {step}) at {viewer.url}  (Ctrl-C to stop)")
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, old)
        viewer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("view-scene", view, argv)
