"""Run configuration: YAML files validated into typed dataclasses, plus `key.sub=value` overrides.

Precedence: dataclass defaults < `--config FILE` < command-line overrides. Unknown keys are
errors that name the closest valid key; values are checked for type and range.
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from datasets.options import DataOptions
from nerf.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class FastConfig:
    """The `fast` method (nerf/models/fast.py): a grid-backed field marched through an occupancy grid.

    encoding: tensorf (vector-matrix factors, `grid_res`, `tensorf_comp` per plane), hash
    (multiresolution hash grid), or dense (voxel grid of `dense_features` at `grid_res`^3).
    hidden/geo_features/colour_hidden: the small MLP heads; sh_degree: spherical harmonics of the
    view direction (1-4). steps: marching steps along the scene box's diagonal. occ_*: the
    occupancy grid (resolution, refresh interval in steps, warm-up steps, cells refreshed per
    update (0 = all in warm-up, a quarter after), opacity threshold, decay). early_stop: stop a
    ray below this transmittance; alpha_min: drop samples with less opacity. grid_lr_scale:
    learning-rate factor of the grid parameters relative to train.lr. carve: start the occupancy
    grid from the training silhouettes (visual hull) when the images have alpha. init_alpha: opacity
    per marching step of the initial fog (keep it above occ_threshold). tv_weight: weight of a
    total-variation loss on the grid's factors (tensorf, dense; TensoRF's regulariser against
    floaters when few views see the scene; 0.05 in llff_fast.yaml: fern, 30 min, 24.91 dB with it).
    tv_decay: scale tv_weight by the learning rate's decay (lr / train.lr), as TensoRF shrinks its
    TV weights with its learning rate (fern, 30 min, tv_weight 0.1 decayed: 24.54 dB, no better
    than a constant 0.05; off).
    random_background: for captures without alpha (real
    photos: every pixel sees a surface), composite training rays over a random colour per ray, so
    a ray matches its pixel only by becoming opaque; no dark fog passing for dark surfaces, and
    opaque rays stop early. Renders are unaffected. render_weight_min: renders skip the colour
    head on samples whose compositing weight is at most this (they count as black; opacity and
    depth are unchanged). render_early_stop: renders (evaluation, video) stop a ray below this
    transmittance instead of early_stop (0: early_stop); a ray's colour then misses at most this
    share of its light. 0.01 in llff_fast.yaml: fern views render 22% faster for -0.02 dB.
    distortion_weight: weight of mip-NeRF 360's distortion loss (depths normalised to [0, 1]
    between near and far), which gathers each ray's weight onto a surface instead of a fog:
    sharper geometry and fewer samples per ray on forward-facing captures (0.005 in
    llff_fast.yaml: fern, 30 min, ~9 samples per ray against ~28, 24.69 against 24.64 dB).
    fit_box: before training, span the grid encoding over the box content can occupy (the
    silhouettes' visual hull when carved, the training frusta in NDC) instead of the whole
    scene box: finer cells on the content for the same parameters (TensoRF's box shrinking). On in
    blender_fast.yaml (lego 400x400, 30 min: 30.50 -> 31.47 dB); off by default, because on the
    built-in scene's 500-step run the finer cells converge slower (28.36 -> 27.00 dB).
    grid_res_start: coarse-to-fine training (TensoRF's schedule, tensorf and dense grids): start
    the grid at this resolution and resample it up to `grid_res` in `grid_upsample_count` steps
    of equal ratio, evenly spaced up to step `grid_upsample_until`; 0 starts at `grid_res`.
    prune_min_share: training skips its no-gradient pruning pass (which drops the steps behind
    opaque surfaces) while the last probe, every occ_update_every steps, dropped less than this
    share of the steps; 0 always prunes. render_first_round: steps per ray in a render's first
    density round (rounds then double; see render/occupancy.py). The rounds decide only how much
    density is evaluated past where a ray stops, not the image: fern renders keep ~4 samples per
    ray, and a first round of 4 instead of 8 rendered a view ~1.5x faster, same pixels."""

    encoding: str = "tensorf"
    grid_res: int = 128
    tensorf_comp: int = 16
    dense_features: int = 12
    hash_levels: int = 16
    hash_features: int = 2
    hash_log2_size: int = 19
    hash_base_res: int = 16
    hash_max_res: int = 1024
    hidden: int = 64
    geo_features: int = 15
    colour_hidden: int = 64
    sh_degree: int = 4
    steps: int = 512
    occ_res: int = 128
    occ_update_every: int = 16
    occ_warmup: int = 256
    occ_cells: int = 0
    occ_threshold: float = 0.01
    occ_decay: float = 0.95
    early_stop: float = 1e-4
    alpha_min: float = 0.0
    grid_lr_scale: float = 1.0
    carve: bool = True
    init_alpha: float = 0.02
    tv_weight: float = 0.0
    tv_decay: bool = False
    random_background: bool = True
    render_weight_min: float = 1e-4
    render_early_stop: float = 0.0
    distortion_weight: float = 0.0
    fit_box: bool = False
    grid_res_start: int = 0
    grid_upsample_until: int = 2000
    grid_upsample_count: int = 4
    prune_min_share: float = 0.2
    render_first_round: int = 4

    def validate(self) -> list[str]:
        errs = []
        if self.encoding not in ("tensorf", "hash", "dense"):
            errs.append(f"model.fast.encoding: must be tensorf, hash or dense, got {self.encoding!r}")
        for k in ("grid_res", "tensorf_comp", "dense_features", "hash_levels", "hash_features", "hash_base_res",
                  "hash_max_res", "hidden", "geo_features", "colour_hidden", "steps", "occ_res", "occ_update_every",
                  "render_first_round"):
            if getattr(self, k) < 1:
                errs.append(f"model.fast.{k}: must be >= 1, got {getattr(self, k)}")
        if not 10 <= self.hash_log2_size <= 24:
            errs.append(f"model.fast.hash_log2_size: must be in [10, 24], got {self.hash_log2_size}")
        if not 1 <= self.sh_degree <= 4:
            errs.append(f"model.fast.sh_degree: must be in [1, 4], got {self.sh_degree}")
        for k in ("occ_warmup", "occ_cells", "alpha_min", "render_weight_min", "distortion_weight"):
            if getattr(self, k) < 0:
                errs.append(f"model.fast.{k}: must be >= 0, got {getattr(self, k)}")
        if not 0 <= self.prune_min_share <= 1:
            errs.append(f"model.fast.prune_min_share: must be in [0, 1], got {self.prune_min_share}")
        if not 0 <= self.render_early_stop < 1:
            errs.append(f"model.fast.render_early_stop: must be in [0, 1), got {self.render_early_stop}")
        for k in ("occ_threshold", "early_stop", "init_alpha"):
            if not 0 < getattr(self, k) < 1:
                errs.append(f"model.fast.{k}: must be in (0, 1), got {getattr(self, k)}")
        if not 0 < self.occ_decay <= 1:
            errs.append(f"model.fast.occ_decay: must be in (0, 1], got {self.occ_decay}")
        if self.tv_weight < 0:
            errs.append(f"model.fast.tv_weight: must be >= 0, got {self.tv_weight}")
        elif self.tv_weight > 0 and self.encoding == "hash":
            errs.append("model.fast.tv_weight: total variation needs a tensorf or dense grid, not the hash grid")
        if self.grid_res_start:
            if self.encoding == "hash":
                errs.append("model.fast.grid_res_start: coarse-to-fine needs a tensorf or dense grid, not the hash grid")
            if not 2 <= self.grid_res_start <= self.grid_res:
                errs.append(f"model.fast.grid_res_start: must be 0 (off) or in [2, grid_res={self.grid_res}], "
                            f"got {self.grid_res_start}")
            for k in ("grid_upsample_until", "grid_upsample_count"):
                if getattr(self, k) < 1:
                    errs.append(f"model.fast.{k}: must be >= 1, got {getattr(self, k)}")
        if not self.grid_lr_scale > 0:
            errs.append(f"model.fast.grid_lr_scale: must be > 0, got {self.grid_lr_scale}")
        return errs


@dataclass
class ModelConfig:
    """method: nerf (the paper model) or fast (grid field + occupancy grid, options in `fast`).
    Paper-model fields: positional-encoding frequencies, MLP depth/width (skip connection after
    layer `skip_layer`), coarse/fine sample counts."""

    method: str = "nerf"
    pos_freqs: int = 10
    dir_freqs: int = 4
    depth: int = 8
    width: int = 256
    skip_layer: int = 4
    view_width: int = 128
    use_viewdirs: bool = True
    n_coarse: int = 64
    n_fine: int = 128
    density_activation: str = "relu"
    density_noise: float = 0.0
    lindisp: bool = False
    # Field variants (INR papers); the defaults are the paper model. encoding: positional | none |
    # gaussian (random Fourier features of the position, sigma in cycles per world unit);
    # activation: relu | siren (sine trunk with omega_0).
    encoding: str = "positional"
    gaussian_features: int = 256
    gaussian_sigma: float = 1.0
    activation: str = "relu"
    siren_omega0: float = 30.0
    fast: FastConfig = field(default_factory=FastConfig)

    def validate(self) -> list[str]:
        errs = self.fast.validate() if self.method == "fast" else []
        for k in ("pos_freqs", "dir_freqs"):
            if getattr(self, k) < 0:
                errs.append(f"model.{k}: must be >= 0, got {getattr(self, k)}")
        for k in ("depth", "width", "view_width", "n_coarse"):
            if getattr(self, k) < 1:
                errs.append(f"model.{k}: must be >= 1, got {getattr(self, k)}")
        if self.n_fine < 0:
            errs.append(f"model.n_fine: must be >= 0, got {self.n_fine}")
        if self.density_activation not in ("relu", "softplus"):
            errs.append(f"model.density_activation: must be relu or softplus, got {self.density_activation!r}")
        if self.density_noise < 0:
            errs.append(f"model.density_noise: must be >= 0, got {self.density_noise}")
        if self.encoding not in ("positional", "none", "gaussian"):
            errs.append(f"model.encoding: must be positional, none or gaussian, got {self.encoding!r}")
        if self.gaussian_features < 1:
            errs.append(f"model.gaussian_features: must be >= 1, got {self.gaussian_features}")
        if not self.gaussian_sigma > 0:
            errs.append(f"model.gaussian_sigma: must be > 0, got {self.gaussian_sigma}")
        if self.activation not in ("relu", "siren"):
            errs.append(f"model.activation: must be relu or siren, got {self.activation!r}")
        if not self.siren_omega0 > 0:
            errs.append(f"model.siren_omega0: must be > 0, got {self.siren_omega0}")
        return errs


@dataclass
class TrainConfig:
    """Optimisation and logging. lr decays exponentially: lr * lr_decay_factor ** (step / lr_decay_steps),
    or with lr_decay_over: minutes, ** (training time / max_minutes), for time-capped runs.
    max_minutes: stop after this much training time (summed over resumes; 0 = no limit).
    max_bad_steps: non-finite steps in a row before rolling back to the last checkpoint at half
    the learning rate; collapse_check_after: the step from which an all-empty or all-solid field
    is reported."""

    max_steps: int = 200_000
    max_minutes: float = 0.0
    batch_rays: int = 1024
    lr: float = 5e-4
    lr_decay_steps: int = 250_000
    lr_decay_factor: float = 0.1
    lr_decay_over: str = "steps"
    precrop_steps: int = 0
    precrop_fraction: float = 0.5
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
        for k in ("max_minutes", "precrop_steps", "eval_every", "threads", "collapse_check_after"):
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
        if self.precision not in ("fp32", "bf16"):
            errs.append(f"train.precision: must be fp32 or bf16, got {self.precision!r}")
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
        if self.path not in ("auto", "orbit", "spherical", "spiral"):
            errs.append(f"video.path: must be auto, orbit, spherical or spiral, got {self.path!r}")
        return errs


@dataclass
class Config:
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    video: VideoConfig = field(default_factory=VideoConfig)

    def validate(self) -> None:
        for sec in dataclasses.fields(self):
            errs = getattr(self, sec.name).validate()
            if errs:
                raise ConfigError(errs[0])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def all_keys(cls=Config, prefix: str = "") -> dict[str, type]:
    """Every dotted leaf key of a config dataclass with its annotated type."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        if dataclasses.is_dataclass(t):
            out.update(all_keys(t, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = t
    return out


def _unknown(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, list(all_keys()), n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(f"{source}: unknown config key '{key}'{hint}")


def _coerce(key: str, value, typ, source: str):
    """Check `value` against the annotated type `typ`; ints are accepted for floats."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        typ = next(a for a in args if a is not type(None))
    if typ is float and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    ok = (
        (typ is bool and isinstance(value, bool))
        or (typ is int and isinstance(value, int) and not isinstance(value, bool))
        or (typ is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (typ is str and isinstance(value, str))
    )
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not ok:
        raise ConfigError(f"{source}: '{key}' must be {typ.__name__}, got {value!r}")
    return float(value) if typ is float else value


def _set(cfg: Config, key: str, value, source: str) -> None:
    keys = all_keys()
    if key not in keys:
        raise _unknown(key, source)
    *path, leaf = key.split(".")
    obj = cfg
    for p in path:
        obj = getattr(obj, p)
    setattr(obj, leaf, _coerce(key, value, keys[key], source))


def _flatten(d: dict, source: str, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if key not in {kk.rsplit(".", 1)[0] for kk in all_keys()} and not any(
                    kk.startswith(key + ".") for kk in all_keys()):
                raise _unknown(key, source)
            flat.update(_flatten(v, source, key + "."))
        else:
            flat[key] = v
    return flat


def read_yaml(path: Path) -> dict:
    """A YAML mapping from `path`, or a one-line error naming the file and the problem."""
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where} ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def resolve_config_path(name: str) -> Path:
    """A config file path, or the name of a file in configs/ (with or without .yaml)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if cand.is_file():
            return cand
    return p


def apply_mapping(cfg: Config, data: dict, source: str) -> Config:
    for k, v in _flatten(data, source).items():
        _set(cfg, k, v, source)
    return cfg


def parse_override(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected KEY=VALUE, e.g. train.max_steps=1000")
    key, raw = text.split("=", 1)
    key = key.strip()
    keys = all_keys()
    if key not in keys:
        raise _unknown(key, f"override '{text}'")
    typ = keys[key]
    if typ is str:
        return key, raw
    for conv in ((int,) if typ is int else (float,) if typ is float else ()):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    try:
        return key, yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        return key, raw


def load_config(config_file: str | None = None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Build and validate a Config from an optional base mapping, a YAML file and overrides."""
    cfg = Config()
    if base is not None:
        apply_mapping(cfg, base, "base config")
    if config_file:
        path = resolve_config_path(config_file)
        apply_mapping(cfg, read_yaml(path), str(path))
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key, value, f"override '{text}'")
    cfg.validate()
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
