"""The training loop: random ray batches from all training images, logging, checkpoints, resume.

Everything random (batch pixels, sample jitter, importance samples) draws from one generator
whose state is checkpointed with the model and optimiser, so a resumed CPU run reproduces an
uninterrupted one exactly. SIGINT/SIGTERM finish the current step, save and stop.
"""
from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from datasets import load_scene
from nerf.checkpoint import load_latest_checkpoint, save_checkpoint
from nerf.config import Config, save_config
from nerf.errors import UserError
from nerf.evaluate import psnr, render_view, ssim
from nerf.models import SceneInfo, build_model
from nerf.raygen import pixel_rays
from nerf.runs import save_scene_json
from render.video import depth_to_rgb


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


def learning_rate(cfg: Config, step: int, seconds: float = 0.0) -> float:
    """train.lr decayed by lr_decay_factor over lr_decay_steps steps, or over the train.max_minutes
    budget (`lr_decay_over: minutes`, `seconds` of training so far): a time-capped run then ends
    at the decayed rate whatever its step rate."""
    t = cfg.train
    if t.lr_decay_over == "minutes":
        return t.lr * t.lr_decay_factor ** min(seconds / (t.max_minutes * 60), 1.0)
    return t.lr * t.lr_decay_factor ** (step / t.lr_decay_steps)


def sample_batch(images: torch.Tensor, n_rays: int, generator: torch.Generator, crop: float = 1.0,
                 valid: torch.Tensor | None = None):
    """Random pixels from all images (n, H, W, 3): camera index, x, y (pixel centres) and colours.

    `crop` < 1 restricts rows and columns to the central fraction (the Blender warm-up).
    `valid`: flat indices (cam * H * W + y * W + x) of the only pixels to draw from, e.g. those a
    capture's masks keep (nerfstudio's rule: masked-out pixels never reach the loss).
    """
    n, h, w = images.shape[:3]
    dev = images.device
    if valid is not None and crop >= 1:
        flat = valid[torch.randint(0, valid.numel(), (n_rays,), generator=generator, device=dev)].long()
        cam, y, x = flat // (h * w), (flat // w) % h, flat % w
        return cam, x.float() + 0.5, y.float() + 0.5, images[cam, y, x]
    dh, dw = (int(h * crop / 2), int(w * crop / 2)) if crop < 1 else (h // 2, w // 2)
    y0, y1 = (h // 2 - dh, h // 2 + dh) if crop < 1 else (0, h)
    x0, x1 = (w // 2 - dw, w // 2 + dw) if crop < 1 else (0, w)
    cam = torch.randint(0, n, (n_rays,), generator=generator, device=dev)
    y = torch.randint(y0, y1, (n_rays,), generator=generator, device=dev)
    x = torch.randint(x0, x1, (n_rays,), generator=generator, device=dev)
    return cam, x.float() + 0.5, y.float() + 0.5, images[cam, y, x]


def masked_pixels(mask: torch.Tensor | None) -> torch.Tensor | None:
    """Flat indices of the pixels a mask (n, H, W) keeps (> 0.5); None when it keeps them all."""
    if mask is None:
        return None
    keep = mask.reshape(-1) > 0.5
    if bool(keep.all()):
        return None
    if not bool(keep.any()):
        raise UserError("data: the capture's masks exclude every pixel; nothing to train on")
    idx = keep.nonzero(as_tuple=True)[0]
    return idx.int() if keep.numel() < 2 ** 31 else idx


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


def _config_changes(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose saved value differs from the current one. Only the saved keys count:
    keys added to the config since the checkpoint was written (at any depth) are absent from it."""
    out = []
    for k, v in saved.items():
        if isinstance(v, dict) and isinstance(current.get(k), dict):
            out += _config_changes(v, current[k], f"{prefix}{k}.")
        elif v != current.get(k):
            out.append(prefix + k)
    return out


class Trainer:
    def __init__(self, cfg: Config, run_dir: Path, device: torch.device, resume: bool = False,
                 overwrite: bool = False, log=print, show_progress: bool = True, init_file: Path | None = None):
        """init_file: start from a learned initialisation (written by meta-train) instead of the default one."""
        self.cfg, self.run_dir, self.device, self.log = cfg, Path(run_dir), device, log
        self.show_progress = show_progress
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        self.scene = load_scene(cfg.data, "train")
        self.val_scene = load_scene(dataclasses.replace(cfg.data, max_images=1), "val")
        self.info = SceneInfo.from_scene(self.scene, has_alpha=self.scene.alpha is not None)
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg, self.info).to(device)
        if init_file is not None:
            from nerf.meta import load_init

            load_init(Path(init_file), self.model, cfg)
            self.log(f"initialised from {init_file}")
        prepare_run_dir(self.run_dir, resume, overwrite)  # only once the data (and init) loaded: no empty run folders
        self.model.train()
        # fused Adam (one kernel over all parameters, same update rule): 1.6 ms against 12.8 ms per
        # update for blender_fast's 1.25M parameters on this CPU (benchmarks/optimizer_step.py)
        self.optimizer = torch.optim.Adam(self.model.param_groups(cfg.train.lr), betas=(0.9, 0.999),
                                          fused=device.type in ("cpu", "cuda"))
        self.generator = torch.Generator(device=device).manual_seed(cfg.train.seed)
        self.step, self.train_seconds = 0, 0.0
        self.skipped_steps, self.fault_streak, self.rollbacks, self.lr_scale = 0, 0, 0, 1.0
        self.collapse_reported = False
        if resume:
            self._restore()
        else:
            self.model.prepare(self.scene)
        save_config(cfg, self.run_dir / "config.yaml")
        save_scene_json(self.run_dir, self.info, self.scene)
        self.images = self.scene.images.to(device)
        self.cameras = self.scene.cameras.to(device)
        self.valid_pixels = masked_pixels(self.scene.mask)
        if self.valid_pixels is not None:
            self.valid_pixels = self.valid_pixels.to(device)

    def _restore(self) -> None:
        found = load_latest_checkpoint(self.run_dir, map_location=self.device)
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
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: checkpoint does not fit this model ({str(exc).splitlines()[0]})") from None
        self.generator.set_state(state["generator"].to(self.generator.device) if self.device.type != "cpu"
                                 else state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.train_seconds = int(state["step"]), float(state.get("train_seconds", 0.0))
        self.skipped_steps = int(state.get("skipped_steps", 0))
        self.lr_scale = float(state.get("lr_scale", 1.0))
        self.log(f"resuming {self.run_dir} from {path.name} (step {self.step})")

    def save(self) -> Path:
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "train_seconds": self.train_seconds, "config": self.cfg.to_dict(),
            "skipped_steps": self.skipped_steps, "lr_scale": self.lr_scale,
        }
        return save_checkpoint(self.run_dir, self.step, state, self.cfg.train.keep_checkpoints)

    def _set_lr(self) -> float:
        scheduled = learning_rate(self.cfg, self.step, self.train_seconds)
        self.model.lr_decay = scheduled / self.cfg.train.lr  # for regularisers that follow the schedule
        lr = scheduled * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr

    def train_step(self) -> dict[str, float]:
        """One optimisation step on a random batch; returns the figures to log.

        A non-finite loss or gradient skips the update (the batch is still consumed, so the
        random stream stays in step) and is counted; `train.max_bad_steps` faults in a row roll
        back to the newest checkpoint at half the learning rate.
        """
        t = self.cfg.train
        lr = self._set_lr()
        if self.model.before_step(self.step):
            self._drop_stale_optimizer_state()
        crop = t.precrop_fraction if self.step < t.precrop_steps else 1.0
        cam, x, y, target = sample_batch(self.images, t.batch_rays, self.generator, crop, self.valid_pixels)
        rays = pixel_rays(self.cameras, cam, x, y, self.info)
        out = self.model(rays, jitter=True, generator=self.generator)
        loss, logs = self.model.loss(out, target)
        self.optimizer.zero_grad(set_to_none=True)
        finite = bool(torch.isfinite(loss))
        if finite:
            loss.backward()
            finite = all(bool(torch.isfinite(p.grad).all()) for p in self.model.parameters() if p.grad is not None)
        self.step += 1
        if finite:
            self.optimizer.step()
            self.fault_streak = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_steps += 1
            self.fault_streak += 1
            if self.fault_streak >= t.max_bad_steps:
                self._roll_back()
        opacity = out["opacity"].detach()
        if "evaluated_per_ray" in out:  # marching methods: density evaluations spent finding the samples
            logs["evaluated_per_ray"] = out["evaluated_per_ray"]
        return {"loss": loss.item(), "lr": lr, "samples_per_ray": out["samples_per_ray"], "finite": finite,
                "opacity_mean": float(opacity.mean()), "opacity_std": float(opacity.std()), **logs}

    def _drop_stale_optimizer_state(self) -> None:
        """After the model reshaped parameters (coarse-to-fine grids): their Adam moments no longer
        fit, so they restart from zero, as TensoRF rebuilds its optimiser at each upsampling."""
        for p in self.model.parameters():
            st = self.optimizer.state.get(p)
            if st and any(torch.is_tensor(v) and v.dim() > 0 and v.shape != p.shape for v in st.values()):
                del self.optimizer.state[p]

    def _roll_back(self) -> None:
        """Repeated numerical faults: reload the newest checkpoint's weights, halve the learning rate."""
        found = load_latest_checkpoint(self.run_dir, map_location=self.device)
        self.lr_scale *= 0.5
        where = "no checkpoint yet, weights kept"
        if found is not None:
            state, path = found
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
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
                f"Try a lower train.lr, another --seed, or model.density_activation=softplus")

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

    def expected_last_step(self) -> int:
        """The step a run capped by train.max_minutes will reach at its current step rate."""
        left = max(self.cfg.train.max_minutes * 60 - self.train_seconds, 0.0)
        return self.step + int(left * self.step / max(self.train_seconds, 1e-9))

    def budget_left(self) -> bool:
        t = self.cfg.train
        return self.step < t.max_steps and (t.max_minutes <= 0 or self.train_seconds < t.max_minutes * 60)

    def train(self) -> TrainResult:
        t = self.cfg.train
        writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self.step if self.step else None)
        bar = tqdm(total=t.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not self.show_progress, mininterval=1.0)
        last_eval, saved_step = None, None
        window_time, window_steps, window_samples = 0.0, 0, 0.0
        try:
            with StopRequested() as stop:
                while self.budget_left() and stop.signum is None:
                    t0 = time.perf_counter()
                    figs = self.train_step()
                    dt = time.perf_counter() - t0
                    self.train_seconds += dt
                    window_time += dt
                    window_steps += 1
                    window_samples += figs["samples_per_ray"] * t.batch_rays
                    bar.update(1)
                    advice = self.check_collapse(figs)
                    if advice:
                        tqdm.write(advice)
                        writer.add_text("train/warning", advice, self.step)
                    if self.step % t.log_every == 0 or self.step == 1:
                        writer.add_scalar("train/loss", figs["loss"], self.step)
                        writer.add_scalar("train/psnr", figs["psnr"], self.step)
                        if "psnr_coarse" in figs:
                            writer.add_scalar("train/psnr_coarse", figs["psnr_coarse"], self.step)
                        writer.add_scalar("train/lr", figs["lr"], self.step)
                        writer.add_scalar("perf/rays_per_s", window_steps * t.batch_rays / window_time, self.step)
                        writer.add_scalar("perf/samples_per_s", window_samples / window_time, self.step)
                        writer.add_scalar("perf/samples_per_ray", figs["samples_per_ray"], self.step)
                        if "evaluated_per_ray" in figs:
                            writer.add_scalar("perf/evaluated_per_ray", figs["evaluated_per_ray"], self.step)
                        for term in ("tv", "distortion"):  # regularisers of the fast method, when on
                            if term in figs:
                                writer.add_scalar(f"train/{term}", figs[term], self.step)
                        writer.add_scalar("train/skipped_steps", self.skipped_steps, self.step)
                        writer.add_scalar("train/opacity", figs["opacity_mean"], self.step)
                        window_time, window_steps, window_samples = 0.0, 0, 0.0
                        bar.set_postfix(psnr=f"{figs['psnr']:.2f}", **({"eval": f"{last_eval:.2f}"} if last_eval else {}))
                        if t.max_minutes > 0:  # a time-capped run ends at the step the clock allows
                            bar.total = min(t.max_steps, self.expected_last_step())
                            bar.refresh()
                    if t.eval_every and self.step % t.eval_every == 0:
                        t0 = time.perf_counter()
                        last_eval = self.log_eval_view(writer)["psnr"]
                        self.train_seconds += time.perf_counter() - t0
                    if self.step % t.checkpoint_every == 0 and self.fault_streak == 0:  # keep pre-fault weights
                        self.save()
                        saved_step = self.step
                interrupted = stop.signum
        finally:
            bar.close()
        if saved_step != self.step:
            self.save()
        if t.eval_every and self.step % t.eval_every != 0 and interrupted is None:
            last_eval = self.log_eval_view(writer)["psnr"]
        writer.flush()
        writer.close()
        return TrainResult(self.step, self.train_seconds, interrupted, last_eval)
