"""The run folder: resolved config, scene facts for rendering without the dataset, and the model.

Layout: config.yaml, scene.json, checkpoints/step_NNNNNNN.pt, events.out.tfevents.*,
metrics.json, renders/, videos/.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from nerf.config import Config, load_config, read_run_yaml
from nerf.errors import UserError
from nerf.models import build_model
from nerf.runs.checkpoints import load_latest_checkpoint
from nerf.scene_rays import SceneInfo


def prepare_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to mix two runs in one folder unless asked to resume or overwrite."""
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir}: exists and is not a folder")
    holds_run = (run_dir / "config.yaml").exists() or (run_dir / "checkpoints").exists()
    if holds_run and not (resume or overwrite):
        raise UserError(f"{run_dir}: already holds a run; pass --resume to continue it or --overwrite to replace it")
    if holds_run and overwrite and not resume:
        import shutil

        for name in ("checkpoints", "renders", "videos"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
        for p in list(run_dir.glob("events.out.tfevents.*")) + [run_dir / "metrics.json", run_dir / "config.yaml",
                                                                  run_dir / "scene.json"]:
            p.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)


def build_run_model(cfg: Config, info: SceneInfo):
    """The model a run's config describes: its method's section, the run's precision and seed."""
    return build_model(cfg.model, info, precision=cfg.train.precision, seed=cfg.train.seed)


def save_scene_json(run_dir: Path, info: SceneInfo, scene) -> None:
    """What render-video needs: scene facts, training poses and the first camera's intrinsics."""
    cams = scene.cameras
    data = {
        "info": dataclasses.asdict(info),
        "name": scene.name,
        "format": scene.metadata.get("format", "unknown"),
        "train_c2w": cams.c2w.tolist(),
        "render_path": scene.metadata.get("render_path"),  # a loader's suggested video path, or None
        "world_bounds": scene.metadata.get("world_bounds"),  # LLFF: [nearest, farthest] scene depth
        # 4x4 from the loaded (normalised) frame back to the data's own world and units; None: the same frame
        "to_world": scene.metadata.get("to_world"),
        "intrinsics": {"fx": float(cams.fx[0]), "fy": float(cams.fy[0]), "cx": float(cams.cx[0]),
                       "cy": float(cams.cy[0]), "width": cams.width, "height": cams.height},
    }
    (run_dir / "scene.json").write_text(json.dumps(data))


REFINED_CAMERAS = "refined_cameras.json"


def save_refined_cameras(run_dir: Path, step: int, c2w: torch.Tensor) -> None:
    """The training cameras as refined by the model (camera-to-world, the run's normalised frame),
    written beside the checkpoints (atomically) so videos and the viewer fly through them."""
    path = run_dir / REFINED_CAMERAS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step, "train_c2w": c2w.detach().cpu().tolist()}))
    tmp.replace(path)


def refined_training_c2w(run_dir: Path | None) -> list | None:
    """The refined training poses a run wrote, or None."""
    path = None if run_dir is None else Path(run_dir) / REFINED_CAMERAS
    if path is None or not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["train_c2w"]
    except (json.JSONDecodeError, KeyError) as exc:
        raise UserError(f"{path}: malformed ({exc})") from None


def read_scene_json(run_dir: Path) -> dict:
    path = run_dir / "scene.json"
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a run folder written by train-scene?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON ({exc.msg})") from None


def load_run_config(run_dir: Path, overrides: list[str] = ()) -> Config:
    path = run_dir / "config.yaml"
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: run folder not found")
    if not path.is_file():
        raise UserError(f"{path}: not found; is {run_dir} a run folder written by train-scene?")
    return load_config(None, overrides, base=read_run_yaml(path))


def load_trained_model(run_dir: Path, cfg: Config, device: torch.device):
    """The run's model with its newest valid checkpoint loaded, in eval mode, and that step."""
    scene = read_scene_json(run_dir)
    info = SceneInfo(**scene["info"])
    model = build_run_model(cfg, info).to(device)
    found = load_latest_checkpoint(run_dir, map_location=device)
    if found is None:
        raise UserError(f"{run_dir / 'checkpoints'}: no readable checkpoint; train first (train-scene)")
    state, path = found
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}: checkpoint does not match the run's config ({first})") from None
    model.eval()
    return model, int(state["step"]), scene
