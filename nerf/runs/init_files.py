"""Init files: a learned initialisation (written by meta-train) that train-scene --init starts from.

Format (torch.save): {"format": "nerf-init/1", "model": state_dict, "config": the resolved config
as a dict, "meta": what produced it}. `load_init` puts it into a model built from a config whose
architecture matches, or raises a UserError naming the file and the first mismatch.
"""
from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from nerf.config import Config, flat_model_config
from nerf.errors import UserError
from nerf.models import VanillaConfig
from nerf.runs.checkpoints import atomic_write_bytes

INIT_FORMAT = "nerf-init/1"
# model keys that decide the network's parameters; the others (samples per ray, noise) may differ
ARCH_KEYS = ("model.method", *(f"model.nerf.{k}" for k in VanillaConfig.ARCH_KEYS))


def save_init(path: Path, model: nn.Module, cfg: Config, meta: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format": INIT_FORMAT, "model": model.state_dict(), "config": cfg.to_dict(), "meta": meta}, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_init(path: Path, model: nn.Module, cfg: Config) -> dict:
    """Load the initialisation in `path` into `model` (built from `cfg`); returns its meta dict.

    A missing or unreadable file, or one made for another architecture, is a UserError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: init file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated zip, a bad pickle
        raise UserError(f"{path}: not a readable init file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != INIT_FORMAT or "model" not in state:
        raise UserError(f"{path}: not an init file written by meta-train")
    saved = flat_model_config(state.get("config", {}).get("model", {}))
    current = flat_model_config(cfg.to_dict()["model"])
    for k in ARCH_KEYS:
        if k in saved and saved[k] != current[k]:
            raise UserError(f"{path}: made for {k}={saved[k]}, but the config has {k}={current[k]}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}: does not fit the model config ({first})") from None
    return state.get("meta", {})
