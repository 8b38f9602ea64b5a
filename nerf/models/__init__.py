"""Models wire samplers, fields and the renderer; `build_model` picks one by `model.method`.

A new method: a module here with its model class and its config dataclass, registered in
METHODS and given a section in `nerf.config.ModelConfig`.
"""
from __future__ import annotations

from nerf.errors import ConfigError
from nerf.models.base import RENDER, TRAIN, RenderModel
from nerf.models.fast import FastConfig, FastNeRF
from nerf.models.vanilla import VanillaConfig, VanillaNeRF
from nerf.scene_rays import SceneInfo

METHODS = {"nerf": VanillaNeRF, "fast": FastNeRF}


def build_model(model_cfg, info: SceneInfo, precision: str = "fp32", seed: int = 0) -> RenderModel:
    """The model named by `model_cfg.method`, built from its own section of `model_cfg` for the
    scene described by `info`."""
    try:
        cls = METHODS[model_cfg.method]
    except KeyError:
        raise ConfigError(f"model.method: unknown method {model_cfg.method!r}; known: {', '.join(METHODS)}") from None
    return cls(getattr(model_cfg, model_cfg.method), info, precision=precision, seed=seed)


__all__ = ["SceneInfo", "RenderModel", "build_model", "METHODS", "TRAIN", "RENDER", "FastConfig", "VanillaConfig"]
