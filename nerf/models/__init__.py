"""Models wire samplers, fields and the renderer; `build_model` picks one by `model.method`."""
from __future__ import annotations

from nerf.models.base import SceneInfo, RenderModel
from nerf.models.vanilla import VanillaNeRF
from nerf.models.fast import FastNeRF
from nerf.errors import ConfigError

METHODS = {"nerf": VanillaNeRF, "fast": FastNeRF}


def build_model(cfg, info: SceneInfo) -> RenderModel:
    """The model named by `cfg.model.method`, built for the scene described by `info`."""
    try:
        cls = METHODS[cfg.model.method]
    except KeyError:
        raise ConfigError(f"model.method: unknown method {cfg.model.method!r}; known: {', '.join(METHODS)}") from None
    return cls(cfg, info)


__all__ = ["SceneInfo", "RenderModel", "build_model", "METHODS"]
