"""Learned initialisations (Tancik et al. 2021) with Reptile (Nichol et al. 2018) over a family of scenes.

Reptile: copy the initialisation theta, adapt the copy to one scene with `inner_steps` steps of
the ordinary training loss (a fresh Adam, the run's lr and ray batch), giving phi, then move theta
a fraction epsilon of the way there: theta <- theta + epsilon (phi - theta). Over many scenes of a
family, theta becomes a point from which a few steps reach any member. Only parameters move;
buffers (e.g. the fixed matrix B of Gaussian Fourier features) stay as drawn.

The family is the built-in procedural scene with `data.synthetic.random_content` on: each seed
draws its own shapes and colours (and cameras). Meta-training uses seeds first_seed ..
first_seed + n_tasks - 1; benchmarks score seeds outside that range.

Init file (torch.save): {"format": "nerf-init/1", "model": state_dict, "config": the resolved
config as a dict, "meta": what produced it}. `load_init` puts it into a model built from a config
whose architecture matches, or raises a UserError naming the file and the first mismatch.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn

from datasets import load_scene
from nerf.checkpoint import atomic_write_bytes
from nerf.config import Config
from nerf.errors import UserError
from nerf.models import SceneInfo, build_model
from nerf.raygen import pixel_rays
from nerf.trainer import sample_batch

INIT_FORMAT = "nerf-init/1"
# model keys that decide the network's parameters; the others (samples per ray, noise) may differ
ARCH_KEYS = ("method", "pos_freqs", "dir_freqs", "depth", "width", "skip_layer", "view_width", "use_viewdirs",
             "encoding", "gaussian_features", "gaussian_sigma", "activation", "siren_omega0")


# ---------------------------------------------------------------------------------------- Reptile

@torch.no_grad()
def reptile_update(model: nn.Module, adapted: dict[str, torch.Tensor], fraction: float) -> None:
    """theta <- theta + fraction * (phi - theta) for every parameter of `model`, phi = adapted[name]."""
    for name, p in model.named_parameters():
        p.add_(adapted[name].to(p.device, p.dtype) - p, alpha=fraction)


def reptile_step(model: nn.Module, adapt, fraction: float):
    """One Reptile step: `adapt(copy)` trains a copy of `model` in place (its return value is
    passed back), then `model` moves `fraction` of the way to the adapted parameters."""
    task_model = copy.deepcopy(model)
    out = adapt(task_model)
    reptile_update(model, {n: p.detach() for n, p in task_model.named_parameters()}, fraction)
    return out


# ------------------------------------------------------------------------------------ the family

def family_config(cfg: Config, seed: int) -> Config:
    """`cfg` with the built-in scene of the family member `seed` (random content on)."""
    if cfg.data.path is not None:
        raise UserError(f"data.path={cfg.data.path}: meta-learning uses the built-in scene family; leave data.path unset")
    synth = dataclasses.replace(cfg.data.synthetic, seed=seed, random_content=True)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, path=None, synthetic=synth))


@dataclasses.dataclass
class Task:
    seed: int
    images: torch.Tensor  # (n, H, W, 3)
    cameras: object
    info: SceneInfo


def load_task(cfg: Config, seed: int, split: str = "train") -> Task:
    scene = load_scene(family_config(cfg, seed).data, split)
    return Task(seed, scene.images, scene.cameras, SceneInfo.from_scene(scene, has_alpha=scene.alpha is not None))


def adapt(model, task: Task, steps: int, lr: float, batch_rays: int, generator: torch.Generator) -> float:
    """`steps` Adam steps of the model's own loss on random rays of `task`; the last batch PSNR."""
    model.train()
    opt = torch.optim.Adam(model.param_groups(lr), betas=(0.9, 0.999))
    logs = {"psnr": float("nan")}
    for step in range(steps):
        model.before_step(step)
        cam, x, y, target = sample_batch(task.images, batch_rays, generator)
        out = model(pixel_rays(task.cameras, cam, x, y, task.info), jitter=True, generator=generator)
        loss, logs = model.loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return logs["psnr"]


@dataclasses.dataclass
class MetaSettings:
    """meta_steps: Reptile steps (outer); inner_steps: adaptation steps per scene; outer_lr: the
    fraction epsilon, annealed linearly to 0 over the run when `anneal` (as in Reptile); minutes:
    stop early after this long (0 = no limit; the annealing then follows the clock too)."""

    meta_steps: int = 200
    inner_steps: int = 16
    outer_lr: float = 1.0
    anneal: bool = True
    n_tasks: int = 16
    first_seed: int = 100
    minutes: float = 0.0
    log_every: int = 10

    def validate(self) -> None:
        for k in ("meta_steps", "inner_steps", "n_tasks", "log_every"):
            if getattr(self, k) < 1:
                raise UserError(f"--{k.replace('_', '-')}: must be >= 1, got {getattr(self, k)}")
        if not 0 < self.outer_lr <= 1:
            raise UserError(f"--outer-lr: must be in (0, 1], got {self.outer_lr}")
        if self.minutes < 0:
            raise UserError(f"--minutes: must be >= 0, got {self.minutes}")
        if self.first_seed < 1:
            raise UserError(f"--first-seed: must be >= 1 (seed 0 is the reference scene), got {self.first_seed}")


def meta_train(cfg: Config, ms: MetaSettings, device: torch.device = torch.device("cpu"), log=print,
               start_from: Path | None = None) -> tuple[nn.Module, dict]:
    """Reptile over the family seeds first_seed .. first_seed + n_tasks - 1; returns the model
    holding the learned initialisation and a summary of the run. `start_from`: an init file to
    continue from (its earlier history is kept in the summary) instead of the default init."""
    ms.validate()
    t_load = time.perf_counter()
    tasks = [load_task(cfg, ms.first_seed + i) for i in range(ms.n_tasks)]
    tasks = [dataclasses.replace(t, images=t.images.to(device), cameras=t.cameras.to(device)) for t in tasks]
    log(f"meta-train: {ms.n_tasks} scenes (seeds {ms.first_seed}..{ms.first_seed + ms.n_tasks - 1}) "
        f"generated in {time.perf_counter() - t_load:.1f} s")
    torch.manual_seed(cfg.train.seed)
    model = build_model(cfg, tasks[0].info).to(device)
    earlier = []
    if start_from is not None:
        earlier = load_init(Path(start_from), model, cfg).get("runs", [])
        log(f"meta-train: continuing from {start_from} ({sum(r['meta_steps_done'] for r in earlier)} earlier steps)")
        model.to(device)
    generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
    order = torch.Generator().manual_seed(cfg.train.seed + 1)
    history, start, step = [], time.perf_counter(), 0
    budget = ms.minutes * 60
    perm = []
    while step < ms.meta_steps:
        elapsed = time.perf_counter() - start
        if budget and elapsed >= budget:
            break
        progress = max(step / ms.meta_steps, elapsed / budget if budget else 0.0)
        eps = ms.outer_lr * (1.0 - progress) if ms.anneal else ms.outer_lr
        if not perm:
            perm = torch.randperm(len(tasks), generator=order).tolist()
        task = tasks[perm.pop()]
        psnr = reptile_step(model, lambda m: adapt(m, task, ms.inner_steps, cfg.train.lr, cfg.train.batch_rays,
                                                   generator), eps)
        step += 1
        history.append({"step": step, "seed": task.seed, "inner_psnr": psnr, "epsilon": eps})
        if step % ms.log_every == 0 or step == 1:
            recent = [h["inner_psnr"] for h in history[-ms.log_every:] if math.isfinite(h["inner_psnr"])]
            log(f"  meta step {step:5d}  eps {eps:.3f}  PSNR after {ms.inner_steps} inner steps "
                f"{sum(recent) / max(len(recent), 1):.2f} dB  ({time.perf_counter() - start:.0f} s)")
    run = {"meta_steps_done": step, "seconds": time.perf_counter() - start,
           "seeds": [ms.first_seed, ms.first_seed + ms.n_tasks - 1], "settings": dataclasses.asdict(ms),
           "history": history}
    runs = earlier + [run]
    # the latest run's figures at the top, its per-step history only once (in runs)
    summary = {**{k: v for k, v in run.items() if k != "history"},
               "total_meta_steps": sum(r["meta_steps_done"] for r in runs),
               "total_seconds": sum(r["seconds"] for r in runs), "runs": runs}
    return model, summary


# -------------------------------------------------------------------------------------- init files

def save_init(path: Path, model: nn.Module, cfg: Config, meta: dict) -> None:
    import io

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
    saved = state.get("config", {}).get("model", {})
    current = dataclasses.asdict(cfg.model)
    for k in ARCH_KEYS:
        if k in saved and saved[k] != current[k]:
            raise UserError(f"{path}: made for model.{k}={saved[k]}, but the config has model.{k}={current[k]}")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"{path}: does not fit the model config ({first})") from None
    return state.get("meta", {})
