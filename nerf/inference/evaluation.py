"""Scoring a run on a split: renders as PNG, metrics.json, and the test figures in TensorBoard."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import imageio.v3 as iio
from tqdm import tqdm

from nerf.config import Config
from nerf.datasets import load_scene
from nerf.inference.views import score_views
from nerf.render.video import depth_to_rgb, to_uint8
from nerf.runs.checkpoints import atomic_write_bytes
from nerf.scene_rays import SceneInfo


def evaluate_run(run_dir: Path, cfg: Config, model, step: int, info: SceneInfo, split: str, max_views: int,
                 show_progress: bool = True, log=print, ranks=None, fit_appearance: bool = False) -> dict | None:
    """Render `max_views` evenly spaced views of `split` (0 = all), score them and write
    RUN_DIR/metrics.json and RUN_DIR/renders/<split>/{name}.png, {name}_depth.png. `ranks`
    (under torchrun) splits the views among the processes; rank 0 writes, the others return None.
    fit_appearance: models with appearance codes also report the right half's PSNR with the mean
    code and with a code fitted on the left half (psnr_right_mean_code, psnr_right_fitted_code)."""
    fit_appearance = fit_appearance and getattr(model, "appearance", None) is not None
    first, total, blocks = split_blocks(dataclasses.replace(cfg.data, max_images=max_views), split)
    writer = ranks is None or ranks.writer
    out_dir = run_dir / "renders" / split
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)

    def save(i, name, render, figures):
        iio.imwrite(out_dir / f"{name}.png", to_uint8(render["rgb"]))
        iio.imwrite(out_dir / f"{name}_depth.png",
                    to_uint8(depth_to_rgb(render["depth"], info.near, info.far, render["opacity"])))

    with tqdm(total=total, desc=f"eval {split}", unit="view", disable=not (show_progress and writer)) as bar:
        result = score_views(model, blocks, info, cfg.render.chunk, on_view=save, progress=bar, ranks=ranks,
                             fit_appearance=fit_appearance)
    if not writer:
        return None
    metrics = {"psnr": result.pop("psnr"), "ssim": result.pop("ssim")}
    for key in ("depth_mae", "psnr_right_mean_code", "psnr_right_fitted_code"):
        if key in result:
            metrics[key] = result.pop(key)
    metrics.update({"split": split, "step": step, "method": cfg.model.method, "scene": first.name, **result})
    atomic_write_bytes(run_dir / "metrics.json", json.dumps(metrics, indent=2).encode())
    log(f"{split}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f} over {metrics['n_views']} views "
        f"at {first.width}x{first.height} (step {step}), {metrics['render_seconds_per_view']:.2f} s per render "
        f"(median); wrote {run_dir / 'metrics.json'}")
    if "psnr_right_fitted_code" in metrics:
        log(f"{split}, right halves: PSNR {metrics['psnr_right_mean_code']:.2f} dB with the mean appearance code, "
            f"{metrics['psnr_right_fitted_code']:.2f} dB with a code fitted on each left half")
    return metrics


BLOCK_BYTES = 256 * 2**20  # a split is loaded this much at a time: images, plus alpha and depth while loading


def split_blocks(data, split: str):
    """(first, total, blocks): a split loaded a block of views at a time, so scoring a large split
    holds one block in memory, not all of it. `first` is the first block (one view: its size and
    the split's view count, `total`, as every loader records it, set the block length); `blocks`
    yields it, then the rest in order."""
    data = dataclasses.replace(data, view_offset=0, view_count=0)  # the whole selection, whatever the config says
    first = load_scene(dataclasses.replace(data, view_count=1), split)
    total = first.metadata["views_in_split"]
    per_view = first.height * first.width * 20
    length = max(1, BLOCK_BYTES // per_view)

    def blocks():
        yield dataclasses.replace(first, alpha=None)  # scores need the composited colours only
        for offset in range(1, total, length):
            block = load_scene(dataclasses.replace(data, view_offset=offset, view_count=length), split)
            yield dataclasses.replace(block, alpha=None)

    return first, total, blocks()
