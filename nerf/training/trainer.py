"""The training loop: random ray batches from all training images, logging, checkpoints, resume.

Everything random (batch pixels, sample jitter, importance samples) draws from one generator
per shard of the batch (one shard in a single process by default) whose state is checkpointed
with the model and optimiser, so a resumed CPU run reproduces an uninterrupted one exactly.
SIGINT/SIGTERM finish the current step, save and stop. Under torchrun each process trains its
shards and the gradients are summed (distributed.py); rank 0 alone writes.
"""
from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from nerf.config import Config, flat_model_config, save_config
from nerf.datasets import load_scene
from nerf.errors import UserError
from nerf.inference.views import render_view
from nerf.metrics import psnr, ssim
from nerf.models.base import native_bf16
from nerf.render.video import depth_to_rgb
from nerf.runs.checkpoints import load_latest_checkpoint, save_checkpoint
from nerf.runs.run_folder import build_run_model, prepare_run_dir, save_refined_cameras, save_scene_json
from nerf.scene_rays import SceneInfo, pixel_rays
from nerf.training import distributed
from nerf.training.batches import masked_pixels, over_random_background, sample_batch
from nerf.training.distributed import SINGLE, RankLost, Ranks
from nerf.training.error_map import ErrorMap
from nerf.training.schedules import budget_share, learning_rate
from nerf.training.step import sharded_step


class _NoWriter:
    """Stands in for the TensorBoard writer on ranks other than 0 (only rank 0 writes)."""

    def __getattr__(self, name):
        return lambda *a, **k: None


class StopRequested:
    """Turns SIGINT/SIGTERM into a flag the loop checks between steps."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclasses.dataclass
class TrainResult:
    step: int
    train_seconds: float
    interrupted_by: int | None  # the signal number if a signal stopped training
    final_psnr: float | None


def _config_changes(saved: dict, current: dict) -> list[str]:
    """Dotted keys of the `model` section whose saved value differs from the current one. Only
    the saved keys count: keys added to the config since the checkpoint was written (at any
    depth) are absent from it; old spellings are resolved first. Keys of a method the run does
    not use do not count."""
    now = flat_model_config(current)
    method = now.get("model.method")
    return [k[len("model."):] for k, v in flat_model_config(saved).items()
            if k in now and v != now[k] and (k == "model.method" or k.startswith(f"model.{method}."))]


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, resume: bool = False,
                 overwrite: bool = False, log=print, show_progress: bool = True, init_file: Path | None = None,
                 ranks: Ranks = SINGLE):
        """init_file: start from a learned initialisation (written by meta-train) instead of the default one.
        ranks: this process's place in a torchrun job (training/distributed.py); one process by default."""
        self.cfg, self.run_dir, self.device, self.log = cfg, Path(run_dir), device, log
        self.show_progress, self.ranks = show_progress, ranks
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.n_shards = distributed.resolve_shards(ranks, cfg.train.batch_shards, cfg.train.batch_rays)
        self.shard_sizes = distributed.shard_sizes(cfg.train.batch_rays, self.n_shards)
        self.scene = load_scene(cfg.data, "train")
        self.val_scene = load_scene(dataclasses.replace(cfg.data, max_images=1), "val")
        if (self.scene.metadata or {}).get("max_side_capped"):  # say so, and how to keep the size asked for
            self.log(f"data.max_side={cfg.data.max_side}: images read at {self.scene.width}x{self.scene.height}, smaller "
                     f"than data.downscale={cfg.data.downscale} gives; data.max_side=0 keeps that size")
        self.info = SceneInfo.from_scene(self.scene, has_alpha=self.scene.alpha is not None)
        torch.manual_seed(cfg.train.seed)
        self.model = build_run_model(cfg, self.info).to(device)
        if cfg.train.precision == "bf16" and not native_bf16(device.type):
            self.log(f"warning: train.precision=bf16 on a {device.type} without native bf16 (AVX512-BF16, AMX or a "
                     "CUDA GPU with bf16): emulated, many times slower than fp32; train.precision=auto picks fp32 here")
        if init_file is not None:
            from nerf.runs.init_files import load_init

            load_init(Path(init_file), self.model, cfg)
            self.log(f"initialised from {init_file}")
        # only once the data (and init) loaded: no empty run folders
        distributed.from_rank0(ranks, lambda: prepare_run_dir(self.run_dir, resume, overwrite))
        self.model.train()
        # fused Adam: one kernel over all parameters, same update rule, several times faster per
        # update on a CPU (benchmarks/optimizer_step.py)
        self.optimizer = torch.optim.Adam(self.model.param_groups(cfg.train.lr), betas=(0.9, 0.999),
                                          fused=device.type in ("cpu", "cuda"))
        # one random stream per shard of the batch, each rank drawing its own (shard 0: the single-process stream)
        self.generators = {s: torch.Generator(device=device).manual_seed(distributed.shard_seed(cfg.train.seed, s))
                           for s in distributed.local_shards(ranks, self.n_shards)}
        self.generator = next(iter(self.generators.values()))
        self.stream_states = (-1, {})  # (step, states) at the start of the step in progress
        self.step, self.train_seconds = 0, 0.0
        self.skipped_steps, self.fault_streak, self.rollbacks, self.lr_scale = 0, 0, 0, 1.0
        self.collapse_reported = False
        self._resume_error_map = None  # a checkpoint's error map, set by _restore
        self.on_step: list = []  # callables(trainer) run after each step, outside the timed training (a viewer)
        if resume:
            self._restore()
        else:
            self.model.prepare(self.scene)
        def write_run_files():
            save_config(cfg, self.run_dir / "config.yaml")
            save_scene_json(self.run_dir, self.info, self.scene)

        distributed.from_rank0(ranks, write_run_files)
        distributed.broadcast_model(ranks, self.model)  # every rank starts from rank 0's weights
        self.images = self.scene.images.to(device)
        self.cameras = self.scene.cameras.to(device)
        self.valid_pixels = masked_pixels(self.scene.mask)
        if self.valid_pixels is not None:
            self.valid_pixels = self.valid_pixels.to(device)
        self.sparse_depth = None  # keypoints (view, x, y, distance) that depth_rays of each batch go through
        if self.model.depth_rays():
            if self.scene.sparse_depth is None:
                log("model.fast.depth_weight: this scene has no sparse points (a COLMAP model's); no depth loss")
            else:
                self.sparse_depth = self.scene.sparse_depth.to(device)
        self.alpha = None  # the training images' alpha, for random backgrounds
        if cfg.train.random_background and self.scene.alpha is not None:
            self.alpha = self.scene.alpha.to(device)
            self.image_background = self.scene.background.to(device)
        self.error_map = None  # where recent rays erred, to draw a share of each batch from
        if cfg.train.error_sampling > 0 and self.valid_pixels is None:
            self.error_map = ErrorMap.for_images(self.images, cfg.train.error_map_cells)
            saved = self._resume_error_map
            if saved is not None and saved["error"].shape == self.error_map.error.shape:
                self.error_map.error.copy_(saved["error"])
                self.error_map.visited.copy_(saved["visited"])

    def _latest_checkpoint(self) -> tuple[dict, Path] | None:
        """The newest checkpoint, read by rank 0 and handed to every rank."""
        where = "cpu" if self.ranks.active else self.device
        return distributed.from_rank0(self.ranks, lambda: load_latest_checkpoint(self.run_dir, map_location=where))

    def _restore(self) -> None:
        found = self._latest_checkpoint()
        if found is None:
            self.log(f"{self.run_dir}: no checkpoint to resume from; starting at step 0")
            return
        state, path = found
        diff = _config_changes(state.get("config", {}).get("model") or {}, dataclasses.asdict(self.cfg.model))
        if diff:
            raise UserError(f"{path}: checkpoint was trained with a different model config (model.{diff[0]}); "
                            "resume with the run's own config or train into a new --out folder")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self._drop_stale_optimizer_state()  # moments of a parameter the load reshaped
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: checkpoint does not fit this model ({str(exc).splitlines()[0]})") from None
        torch.set_rng_state(state["torch_rng"])
        self.step, self.train_seconds = int(state["step"]), float(state.get("train_seconds", 0.0))
        self._restore_streams(state)
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self._resume_error_map = state.get("error_map")
        self.log(f"resuming {self.run_dir} from {path.name} (step {self.step})")

    def _restore_streams(self, state: dict) -> None:
        """Each local shard's random stream from the checkpoint. A shard it lacks (the run had
        another number of shards, or a rank was lost before its stream was saved) restarts from a
        seed of (seed, shard, step): the run goes on, no longer identical to an uninterrupted one."""
        saved = {0: state["generator"], **state.get("shard_generators", {})}
        restarted = []
        for s, gen in self.generators.items():
            if saved.get(s) is None:
                gen.manual_seed(distributed.shard_seed(self.cfg.train.seed, s, restart_step=self.step))
                restarted.append(s)
            else:
                gen.set_state(saved[s].to(gen.device) if self.device.type != "cpu" else saved[s])
        if restarted or state.get("batch_shards", 1) != self.n_shards:
            self.log(f"note: the checkpoint has {state.get('batch_shards', 1)} batch shard(s), this run "
                     f"{self.n_shards}; shard stream(s) {restarted or 'none'} restart, so the run continues "
                     f"but no longer matches an uninterrupted one")

    def save(self, stream_states: dict | None = None) -> Path | None:
        """Rank 0 writes a checkpoint holding every shard's random stream, gathered from the ranks;
        `stream_states` (shard -> state) replaces the gathering when another rank is lost."""
        if stream_states is None:
            mine = {s: g.get_state() for s, g in self.generators.items()}
            stream_states = {s: st for part in distributed.all_gather(self.ranks, mine) for s, st in part.items()}
        if not self.ranks.writer:
            return None
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
            "generator": stream_states[0], "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds, "config": self.cfg.to_dict(),
            "skipped_steps": self.skipped_steps, "lr_scale": self.lr_scale,
        }
        if self.error_map is not None:  # rank 0's: under torchrun every rank resumes from it
            state["error_map"] = {"error": self.error_map.error, "visited": self.error_map.visited}
        if self.n_shards > 1:
            state["batch_shards"] = self.n_shards
            state["shard_generators"] = {s: st for s, st in stream_states.items() if s}
        path = save_checkpoint(self.run_dir, self.step, state, self.cfg.train.keep_checkpoints)
        refined = self.model.refined_cameras(self.cameras.c2w)
        if refined is not self.cameras.c2w:  # the model refines poses: render-video flies through these
            save_refined_cameras(self.run_dir, self.step, refined)
        return path

    def _set_lr(self) -> tuple[float, float]:
        """Set every group's rate for this step; returns it and its decay so far (lr / train.lr)."""
        scheduled = learning_rate(self.cfg.train, self.step, self.train_seconds)
        lr = scheduled * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr, scheduled / self.cfg.train.lr

    def train_step(self) -> dict[str, float]:
        """One optimisation step on a random batch; returns the figures to log.

        A non-finite loss or gradient skips the update (the batch is still consumed, so the
        random stream stays in step) and is counted; `train.max_bad_steps` faults in a row roll
        back to the newest checkpoint at half the learning rate.
        """
        t = self.cfg.train
        lr, lr_factor = self._set_lr()
        if self.model.before_step(self.step, lr_factor, budget_share(t, self.train_seconds)):
            self._drop_stale_optimizer_state()
        crop = t.precrop_fraction if self.step < t.precrop_steps else 1.0
        if self.ranks.active:  # what a checkpoint holds if another rank is lost during this step
            self.stream_states = (self.step, {s: g.get_state() for s, g in self.generators.items()})
        shards, pixels = [], []
        for s, generator in self.generators.items():  # this rank's shards of the global batch
            n = self.shard_sizes[s]
            n_depth = 0 if self.sparse_depth is None else min(n - 1, round(self.model.depth_rays() * n / t.batch_rays))
            cam, x, y, target = sample_batch(self.images, n - n_depth, generator, crop, self.valid_pixels,
                                             t.pixel_jitter, self.error_map, t.error_sampling)
            depth = None
            if n_depth:
                cam, x, y, target, depth = self._with_keypoints(cam, x, y, target, n_depth, generator)
            rays = pixel_rays(self.cameras, cam, x, y, self.info)
            rays.cam_idx = cam  # the image of each ray, for per-image parameters
            rays.depth_target = depth
            if self.alpha is not None:
                alpha = self.alpha[cam, y.long(), x.long()]  # x, y inside their pixels: the floor is the pixel
                target, rays.background = over_random_background(target, alpha, self.image_background, generator)
            shards.append((rays, target, generator, n / t.batch_rays))
            pixels.append((cam, x, y))
        reduce = (lambda finite: distributed.reduce_gradients(self.ranks, self.model, finite)) if self.ranks.active else None
        result = sharded_step(self.model, self.optimizer, shards, reduce)
        if self.error_map is not None:
            cam, x, y = (torch.cat(c) for c in zip(*pixels))
            self.error_map.update(cam, x, y, result.outputs["ray_error"])
        self.step += 1
        if result.finite:
            self.fault_streak = 0
        else:
            self.skipped_steps += 1
            self.fault_streak += 1
            if self.fault_streak >= t.max_bad_steps:
                self._roll_back()
        opacity = result.outputs["opacity"].detach()
        return {"loss": result.loss, "lr": lr, "samples_per_ray": result.outputs["samples_per_ray"],
                "finite": result.finite, "opacity_mean": float(opacity.mean()), "opacity_std": float(opacity.std()),
                "losses": result.losses, "metrics": result.metrics, **result.metrics}

    def _with_keypoints(self, cam, x, y, target, n: int, generator):
        """The batch's pixels (cam, x, y, colour) followed by `n` keypoints of the sparse depth drawn
        at random (their rays go through the keypoint itself; the colour is its pixel's), and each
        ray's depth target: NaN for the pixels, the point's distance for the keypoints."""
        rows = self.sparse_depth[torch.randint(0, self.sparse_depth.shape[0], (n,), generator=generator,
                                               device=self.sparse_depth.device)]
        kc, kx, ky = rows[:, 0].long(), rows[:, 1], rows[:, 2]
        h, w = self.images.shape[1:3]
        colour = self.images[kc, ky.long().clamp_(0, h - 1), kx.long().clamp_(0, w - 1)]
        depth = torch.cat([torch.full_like(x, float("nan")), rows[:, 3]])
        return torch.cat([cam, kc]), torch.cat([x, kx]), torch.cat([y, ky]), torch.cat([target, colour]), depth

    def _drop_stale_optimizer_state(self) -> None:
        """After the model reshaped parameters (coarse-to-fine grids, or a checkpoint whose dense grid
        was saved channel-first): their Adam moments no longer fit, so they restart from zero, as
        TensoRF rebuilds its optimiser at each upsampling."""
        for p in self.model.parameters():
            st = self.optimizer.state.get(p)
            if st and any(torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape for v in st.values()):
                del self.optimizer.state[p]

    def _roll_back(self) -> None:
        """Repeated numerical faults: reload the newest checkpoint's weights, halve the learning rate."""
        found = self._latest_checkpoint()
        self.lr_scale *= 0.5
        where = "no checkpoint yet, weights kept"
        if found is not None:
            state, path = found
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self._drop_stale_optimizer_state()
            where = path.name
        self.rollbacks += 1
        self.fault_streak = 0
        self.log(f"warning: {self.cfg.train.max_bad_steps} non-finite steps in a row at step {self.step}; "
                 f"rolled back ({where}) with the learning rate scaled by {self.lr_scale:g}")

    def check_collapse(self, figs: dict[str, float]) -> str | None:
        """Advice if the field has collapsed to all-empty or (for scenes with background) all-solid."""
        t = self.cfg.train
        if self.collapse_reported or self.step < t.collapse_check_after:
            return None
        if figs["opacity_std"] > 0.01:
            return None
        m = figs["opacity_mean"]
        alpha_mean = float(self.scene.alpha.mean()) if self.scene.alpha is not None else None
        if m < 0.02 and (alpha_mean is None or alpha_mean > 0.05):
            kind = "empty space (every ray sees only the background)"
        elif m > 0.98 and alpha_mean is not None and alpha_mean < 0.9:
            kind = "solid fog (every ray is opaque, the background is never seen)"
        else:
            return None
        self.collapse_reported = True
        return (f"warning: the field collapsed to {kind} at step {self.step}; training will not recover on its own. "
                f"Try a lower train.lr, another --seed, or (the paper model) model.nerf.density_activation=softplus")

    def log_eval_view(self, writer: SummaryWriter) -> dict[str, float]:
        """Render the first val view and log its figures and images."""
        cams = self.val_scene.cameras.to(self.device)
        out = render_view(self.model, cams, 0, self.info, self.cfg.render.chunk)
        gt = self.val_scene.images[0]
        figs = {"psnr": psnr(out["rgb"], gt), "ssim": ssim(out["rgb"], gt)}
        writer.add_scalar("eval/psnr", figs["psnr"], self.step)
        writer.add_scalar("eval/ssim", figs["ssim"], self.step)
        writer.add_image("eval/rgb", out["rgb"].clamp(0, 1), self.step, dataformats="HWC")
        writer.add_image("eval/gt", gt, self.step, dataformats="HWC")
        writer.add_image("eval/depth", depth_to_rgb(out["depth"], self.info.near, self.info.far, out["opacity"]),
                         self.step, dataformats="HWC")
        writer.add_image("eval/opacity", out["opacity"].clamp(0, 1), self.step, dataformats="HW")
        return figs

    def _mean_over_ranks(self, figs: dict) -> dict:
        """The logged figures averaged over the ranks, each of which saw its part of the batch."""
        if not self.ranks.active:
            return figs
        flat = {k: figs[k] for k in ("loss", "samples_per_ray", "opacity_mean", "opacity_std")}
        flat.update({f"losses/{k}": v for k, v in figs["losses"].items()})
        flat.update({f"metrics/{k}": v for k, v in figs["metrics"].items()})
        mean = distributed.mean_over_ranks(self.ranks, flat)
        pick = lambda prefix: {k[len(prefix):]: v for k, v in mean.items() if k.startswith(prefix)}  # noqa: E731
        return {**figs, **pick("metrics/"), **{k: mean[k] for k in flat if "/" not in k},
                "losses": pick("losses/"), "metrics": pick("metrics/")}

    def _check_ranks_agree(self) -> None:
        """Every rank should hold the same weights and grids (the same update from the same
        gradients); if one drifted (a nondeterministic kernel), say so and realign on rank 0's."""
        drifted = distributed.differing_tensors(self.ranks, self.model)
        if drifted:
            self.log(f"warning: ranks disagree at step {self.step} on {', '.join(drifted[:3])}"
                     f"{' ...' if len(drifted) > 3 else ''}; continuing from rank 0's values")
            distributed.broadcast_model(self.ranks, self.model)

    def _rank_lost(self, exc: RankLost, writer) -> RankLost:
        """Another process of the job stopped: rank 0 checkpoints the last complete step (streams
        of the lost ranks' shards restart on resume) and every rank stops with one line."""
        where = ""
        if self.ranks.writer:
            step, states = self.stream_states
            if step != self.step:  # the step finished: the streams are where the next one starts
                states = {s: g.get_state() for s, g in self.generators.items()}
            where = f"; saved {self.save(stream_states=states)}"
            writer.close()
        return RankLost(f"rank {self.ranks.rank}: another process of the job stopped at step {self.step} "
                        f"({exc}){where}")

    def expected_last_step(self) -> int:
        """The step a run capped by train.max_minutes will reach at its current step rate."""
        left = max(self.cfg.train.max_minutes * 60 - self.train_seconds, 0.0)
        return self.step + int(left * self.step / max(self.train_seconds, 1e-9))

    def budget_left(self) -> bool:
        t = self.cfg.train
        return self.step < t.max_steps and (t.max_minutes <= 0 or self.train_seconds < t.max_minutes * 60)

    def train(self) -> TrainResult:
        t = self.cfg.train
        writer = (SummaryWriter(log_dir=str(self.run_dir), purge_step=self.step if self.step else None)
                  if self.ranks.writer else _NoWriter())
        bar = tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not self.show_progress, mininterval=1.0)
        last_eval, saved_step = None, None
        window_time, window_steps, window_samples = 0.0, 0, 0.0
        try:
            with StopRequested() as stop:
                try:  # a signal during the checkpoint after a lost rank waits for it
                    while True:
                        if self.ranks.active:  # one clock and one stop decision for every rank
                            self.train_seconds, stop.signum = distributed.sync_step_state(self.ranks, self.train_seconds,
                                                                                          stop.signum)
                        if not self.budget_left() or stop.signum is not None:
                            break
                        t0 = time.perf_counter()
                        figs = self.train_step()
                        dt = time.perf_counter() - t0
                        self.train_seconds += dt
                        window_time += dt
                        window_steps += 1
                        window_samples += figs["samples_per_ray"] * t.batch_rays
                        bar.update(1)
                        advice = self.check_collapse(figs)
                        if advice and self.ranks.writer:
                            tqdm.write(advice)
                            writer.add_text("train/warning", advice, self.step)
                        if self.step % t.log_every == 0 or self.step == 1:
                            figs = self._mean_over_ranks(figs)
                            writer.add_scalar("train/loss", figs["loss"], self.step)
                            if len(figs["losses"]) > 1:  # each term, when the model has several
                                for name, value in figs["losses"].items():
                                    writer.add_scalar(f"loss/{name}", value, self.step)
                            for name, value in figs["metrics"].items():  # whatever the model reports
                                writer.add_scalar(f"train/{name}", value, self.step)
                            writer.add_scalar("train/lr", figs["lr"], self.step)
                            writer.add_scalar("perf/rays_per_s", window_steps * t.batch_rays / window_time, self.step)
                            writer.add_scalar("perf/samples_per_s", window_samples / window_time, self.step)
                            writer.add_scalar("perf/samples_per_ray", figs["samples_per_ray"], self.step)
                            writer.add_scalar("train/skipped_steps", self.skipped_steps, self.step)
                            writer.add_scalar("train/opacity", figs["opacity_mean"], self.step)
                            window_time, window_steps, window_samples = 0.0, 0, 0.0
                            shown = {"psnr": f"{figs['metrics'].get('psnr', float('nan')):.2f}"}
                            if last_eval:
                                shown["eval"] = f"{last_eval:.2f}"
                            bar.set_postfix(**shown)
                            if t.max_minutes > 0:  # a time-capped run ends at the step the clock allows
                                bar.total = min(t.max_steps, self.expected_last_step())
                                bar.refresh()
                        if t.eval_every and self.step % t.eval_every == 0 and self.ranks.writer:
                            t0 = time.perf_counter()
                            last_eval = self.log_eval_view(writer)["psnr"]
                            self.train_seconds += time.perf_counter() - t0
                        if self.step % t.checkpoint_every == 0 and self.fault_streak == 0:  # keep pre-fault weights
                            self._check_ranks_agree()
                            self.save()
                            saved_step = self.step
                        for hook in self.on_step:
                            hook(self)
                    interrupted = stop.signum
                    if saved_step != self.step:
                        self.save()
                except RankLost as exc:
                    raise self._rank_lost(exc, writer) from exc
        finally:
            bar.close()
        if t.eval_every and self.step % t.eval_every != 0 and interrupted is None and self.ranks.writer:
            last_eval = self.log_eval_view(writer)["psnr"]
        writer.flush()
        writer.close()
        return TrainResult(self.step, self.train_seconds, interrupted, last_eval)

    def release_images(self) -> None:
        """Drop the training and validation images (cameras and `info` stay): the evaluation that
        follows training in the same process then never holds the training split and the test
        split at once."""
        self.scene = self.val_scene = self.images = self.valid_pixels = self.error_map = self.alpha = None
