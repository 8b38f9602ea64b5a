"""The run config of train-scene, eval-scene and render-video: one typed section per part of a run.

`data` (datasets/options.py), `model` (a method name and one section per method, each defined
beside its model in nerf/models/), `train`, `render`, `eval`, `video`. Loaded by the one settings
system (nerf/settings.py): YAML with includes, `KEY=VALUE` overrides, one-line errors.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from nerf.datasets.options import DataOptions
from nerf.errors import ConfigError  # noqa: F401  (re-exported: callers catch it from here)
from nerf.models import METHODS, FastConfig, VanillaConfig
from nerf.settings import CONFIG_DIR, Schema, load_settings, read_yaml, save_settings  # noqa: F401


@dataclass
class ModelConfig:
    """method: nerf (the paper model, options in `nerf`) or fast (grid field + occupancy grid,
    options in `fast`). Only the chosen method's section is used."""

    method: str = "nerf"
    nerf: VanillaConfig = field(default_factory=VanillaConfig)
    fast: FastConfig = field(default_factory=FastConfig)

    def validate(self) -> list[str]:
        if self.method not in METHODS:
            return [f"model.method: unknown method {self.method!r}; known: {', '.join(METHODS)}"]
        return getattr(self, self.method).validate()


@dataclass
class TrainConfig:
    """Optimisation and logging. lr decays exponentially: lr * lr_decay_factor ** (step / lr_decay_steps),
    or with lr_decay_over: minutes, ** (training time / max_minutes), for time-capped runs.
    max_minutes: stop after this much training time (summed over resumes; 0 = no limit).
    max_bad_steps: non-finite steps in a row before rolling back to the last checkpoint at half
    the learning rate; collapse_check_after: the step from which an all-empty or all-solid field
    is reported. batch_shards: the batch is drawn in this many shards, each from its own random
    stream (0: one per process under torchrun); a single process with N shards reproduces an
    N-process run, and takes a batch too large for memory one shard at a time. pixel_jitter: each
    training ray passes through a random point of its pixel instead of the centre (instant-ngp),
    so a ray's expected colour is the pixel's area average, as a photo records it.
    error_sampling: the share of each batch drawn where the recent training error is high
    (instant-ngp's error map, `training/error_map.py`), the rest uniformly; error_map_cells: the
    map's cells along an image's longer side. Not with masks or during precrop.
    random_background: for images with alpha (Blender scenes, RGBA captures), each training ray is
    composited over a random colour of its own, and so is its target pixel (instant-ngp's rule):
    a ray matches its pixel only with the pixel's own opacity, so a bright or view-dependent
    surface cannot be faked as see-through onto the fixed background colour. Renders and
    evaluation keep data.background. Images without alpha: no effect."""

    max_steps: int = 200_000
    max_minutes: float = 0.0
    batch_rays: int = 1024
    batch_shards: int = 0
    lr: float = 5e-4
    lr_decay_steps: int = 250_000
    lr_decay_factor: float = 0.1
    lr_decay_over: str = "steps"
    precrop_steps: int = 0
    precrop_fraction: float = 0.5
    pixel_jitter: bool = False
    error_sampling: float = 0.0
    error_map_cells: int = 64
    random_background: bool = False
    precision: str = "fp32"
    log_every: int = 25
    eval_every: int = 500
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    seed: int = 0
    threads: int = 0
    max_bad_steps: int = 20
    collapse_check_after: int = 500

    def validate(self) -> list[str]:
        errs = []
        for k in ("max_steps", "batch_rays", "lr_decay_steps", "log_every", "checkpoint_every", "keep_checkpoints",
                  "max_bad_steps"):
            if getattr(self, k) < 1:
                errs.append(f"train.{k}: must be >= 1, got {getattr(self, k)}")
        for k in ("max_minutes", "precrop_steps", "eval_every", "threads", "collapse_check_after", "batch_shards"):
            if getattr(self, k) < 0:
                errs.append(f"train.{k}: must be >= 0, got {getattr(self, k)}")
        if not self.lr > 0:
            errs.append(f"train.lr: must be > 0, got {self.lr}")
        if not 0 < self.lr_decay_factor <= 1:
            errs.append(f"train.lr_decay_factor: must be in (0, 1], got {self.lr_decay_factor}")
        if not 0 < self.precrop_fraction <= 1:
            errs.append(f"train.precrop_fraction: must be in (0, 1], got {self.precrop_fraction}")
        if self.lr_decay_over not in ("steps", "minutes"):
            errs.append(f"train.lr_decay_over: must be steps or minutes, got {self.lr_decay_over!r}")
        elif self.lr_decay_over == "minutes" and self.max_minutes <= 0:
            errs.append("train.lr_decay_over: minutes needs a train.max_minutes budget (> 0)")
        if not 0 <= self.error_sampling <= 1:
            errs.append(f"train.error_sampling: must be in [0, 1], got {self.error_sampling}")
        if self.error_map_cells < 1:
            errs.append(f"train.error_map_cells: must be >= 1, got {self.error_map_cells}")
        if self.precision not in ("fp32", "bf16", "auto"):
            errs.append(f"train.precision: must be fp32, bf16 or auto, got {self.precision!r}")
        return errs


@dataclass
class RenderConfig:
    """chunk: rays evaluated at once when rendering whole images (bounds memory at any size)."""

    chunk: int = 4096

    def validate(self) -> list[str]:
        return [] if self.chunk >= 1 else [f"render.chunk: must be >= 1, got {self.chunk}"]


@dataclass
class EvalConfig:
    """The split and number of evenly spaced views scored at the end of training (0 = all)."""

    split: str = "test"
    max_views: int = 0

    def validate(self) -> list[str]:
        errs = []
        if self.split not in ("train", "val", "test"):
            errs.append(f"eval.split: must be train, val or test, got {self.split!r}")
        if self.max_views < 0:
            errs.append(f"eval.max_views: must be >= 0, got {self.max_views}")
        return errs


@dataclass
class VideoConfig:
    """path: auto (Blender 360 path for Blender scenes, the LLFF spiral for forward-facing LLFF
    scenes, else an orbit fitted to the training cameras), orbit, spherical or spiral;
    downscale: divides the training image size."""

    frames: int = 120
    fps: float = 30.0
    downscale: int = 1
    path: str = "auto"

    def validate(self) -> list[str]:
        errs = []
        if self.frames < 1:
            errs.append(f"video.frames: must be >= 1, got {self.frames}")
        if not self.fps > 0:
            errs.append(f"video.fps: must be > 0, got {self.fps}")
        if self.downscale < 1:
            errs.append(f"video.downscale: must be >= 1, got {self.downscale}")
        if self.path not in ("auto", "orbit", "spherical", "spiral", "interpolate"):
            errs.append(f"video.path: must be auto, orbit, spherical, spiral or interpolate, got {self.path!r}")
        return errs


@dataclass
class Config:
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def validate(self) -> list[str]:
        return [e for sec in dataclasses.fields(self) for e in getattr(self, sec.name).validate()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# the paper model's options were once flat under `model.`; older configs and run folders say so
LEGACY_ALIASES = {f"model.{f.name}": f"model.nerf.{f.name}" for f in dataclasses.fields(VanillaConfig)}
SCHEMA = Schema(Config, LEGACY_ALIASES)


def read_run_yaml(path: Path) -> dict:
    """A run folder's saved config.yaml, with the options whose default changed since it was
    written set to what the run was trained with: a fast run saved before scene contraction
    existed was trained boxed (contraction none), whatever `auto` decides today; one saved
    before appearance_mode existed fed its codes to the colour head."""
    data = read_yaml(path)
    fast = (data.get("model") or {}).get("fast")
    if isinstance(fast, dict) and "contraction" not in fast:
        fast["contraction"] = "none"
    if isinstance(fast, dict) and "appearance_mode" not in fast:
        fast["appearance_mode"] = "head"
    return data


def load_config(config_file: str | None = None, overrides=(), base: dict | None = None) -> Config:
    """Build and validate a run Config from an optional base mapping (a run's saved config), a
    YAML file (a path or a name in configs/) and `KEY=VALUE` overrides."""
    return load_settings(SCHEMA, config_file, overrides, base)


def flat_model_config(model: dict, prefix: str = "model.") -> dict:
    """{dotted key: value} of a saved `model` section, old spellings resolved, for comparing
    the config a checkpoint or init file was made with against the current one (keys since
    removed are kept as they are: they simply match nothing)."""
    flat = {}
    for k, v in model.items():
        if isinstance(v, dict):
            flat.update(flat_model_config(v, f"{prefix}{k}."))
        else:
            flat[LEGACY_ALIASES.get(prefix + k, prefix + k)] = v
    return flat


def save_config(cfg: Config, path: Path) -> None:
    save_settings(cfg, path)
