"""Learned initialisations (Tancik et al. 2021) with Reptile (Nichol et al. 2018) over a family of scenes.

Reptile: copy the initialisation theta, adapt the copy to one scene with `inner_steps` steps of
the ordinary training loss (a fresh Adam, the run's lr and ray batch), giving phi, then move theta
a fraction epsilon of the way there: theta <- theta + epsilon (phi - theta). Over many scenes of a
family, theta becomes a point from which a few steps reach any member. Only parameters move;
buffers (e.g. the fixed matrix B of Gaussian Fourier features) stay as drawn.

The family is the built-in procedural scene with `data.synthetic.random_content` on: each seed
draws its own shapes and colours (and cameras). Meta-training uses seeds first_seed ..
first_seed + n_tasks - 1; benchmarks score seeds outside that range.

The learned initialisation is written as an init file (nerf/runs/init_files.py).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn

from nerf.config import LEGACY_ALIASES, Config
from nerf.datasets import load_scene
from nerf.errors import UserError
from nerf.runs.init_files import load_init
from nerf.runs.run_folder import build_run_model
from nerf.scene_rays import SceneInfo, pixel_rays
from nerf.settings import Schema, load_settings, validate
from nerf.training.batches import sample_batch
from nerf.training.step import optimisation_step

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
    psnr = float("nan")
    for step in range(steps):
        model.before_step(step)
        cam, x, y, target = sample_batch(task.images, batch_rays, generator)
        result = optimisation_step(model, opt, pixel_rays(task.cameras, cam, x, y, task.info), target, generator)
        psnr = result.metrics.get("psnr", float("nan"))
    return psnr


@dataclasses.dataclass
class MetaConfig:
    """The `meta.*` section of meta-train's config. meta_steps: Reptile steps (outer);
    inner_steps: adaptation steps per scene; outer_lr: the fraction epsilon, annealed linearly to
    0 over the run when `anneal` (as in Reptile); n_tasks scenes, seeds first_seed ..
    first_seed + n_tasks - 1; minutes: stop early after this long (0 = no limit; the annealing
    then follows the clock too)."""

    meta_steps: int = 200
    inner_steps: int = 16
    outer_lr: float = 1.0
    anneal: bool = True
    n_tasks: int = 16
    first_seed: int = 100
    minutes: float = 0.0
    log_every: int = 10

    def validate(self) -> list[str]:
        errs = [f"meta.{k}: must be >= 1, got {getattr(self, k)}"
                for k in ("meta_steps", "inner_steps", "n_tasks", "log_every") if getattr(self, k) < 1]
        if not 0 < self.outer_lr <= 1:
            errs.append(f"meta.outer_lr: must be in (0, 1], got {self.outer_lr}")
        if self.minutes < 0:
            errs.append(f"meta.minutes: must be >= 0, got {self.minutes}")
        if self.first_seed < 1:
            errs.append(f"meta.first_seed: must be >= 1 (seed 0 is the reference scene), got {self.first_seed}")
        return errs


@dataclasses.dataclass
class MetaTrainConfig(Config):
    """meta-train's config: a run config (the model, the inner loop's train.lr and batch) plus `meta`."""

    meta: MetaConfig = dataclasses.field(default_factory=MetaConfig)


META_SCHEMA = Schema(MetaTrainConfig, LEGACY_ALIASES)


def load_meta_config(config_file: str | None = None, overrides=(), base: dict | None = None) -> MetaTrainConfig:
    return load_settings(META_SCHEMA, config_file, overrides, base)


def meta_train(cfg: Config, ms: MetaConfig, device: torch.device = torch.device("cpu"), log=print,
               start_from: Path | None = None) -> tuple[nn.Module, dict]:
    """Reptile over the family seeds first_seed .. first_seed + n_tasks - 1; returns the model
    holding the learned initialisation and a summary of the run. `start_from`: an init file to
    continue from (its earlier history is kept in the summary) instead of the default init."""
    validate(ms)
    t_load = time.perf_counter()
    tasks = [load_task(cfg, ms.first_seed + i) for i in range(ms.n_tasks)]
    tasks = [dataclasses.replace(t, images=t.images.to(device), cameras=t.cameras.to(device)) for t in tasks]
    log(f"meta-train: {ms.n_tasks} scenes (seeds {ms.first_seed}..{ms.first_seed + ms.n_tasks - 1}) "
        f"generated in {time.perf_counter() - t_load:.1f} s")
    torch.manual_seed(cfg.train.seed)
    model = build_run_model(cfg, tasks[0].info).to(device)
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
