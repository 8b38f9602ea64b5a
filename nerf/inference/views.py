"""Rendering whole views with a trained model and scoring them: PSNR, SSIM (kornia), depth error."""
from __future__ import annotations

import time

import torch

from nerf.datasets.scene import Scene
from nerf.metrics import psnr, ssim
from nerf.models.base import RENDER
from nerf.render.chunked import render_chunks
from nerf.scene_rays import SceneInfo, view_pixel_rays


@torch.no_grad()
def render_view(model, cameras, index: int, info: SceneInfo, chunk: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """rgb (H, W, 3), depth (H, W), opacity (H, W) of one view, rendered `chunk` rays at a time."""
    was_training = model.training
    model.eval()
    h, w = int(round(cameras.height * scale)), int(round(cameras.width * scale))
    out = render_chunks(lambda r: model(r, mode=RENDER), h * w,
                        lambda a, b: view_pixel_rays(cameras, index, info, a, b, scale), chunk)
    model.train(was_training)
    return {"rgb": out["rgb"].reshape(h, w, 3), "depth": out["depth"].reshape(h, w),
            "opacity": out["opacity"].reshape(h, w)}


def depth_error(pred_depth: torch.Tensor, true_depth: torch.Tensor) -> float:
    """Mean absolute error of rendered depth on pixels whose pixel-centre ray hits the scene."""
    hit = torch.isfinite(true_depth)
    if not hit.any():
        return float("nan")
    return float((pred_depth[hit] - true_depth[hit]).abs().mean())


def score_views(model, scene, info: SceneInfo, chunk: int, on_view=None, progress=None, ranks=None,
                fit_appearance: bool = False) -> dict | None:
    """Render every view of `scene` and score it; `on_view(i, name, render, figures)` sees each.
    `scene` is a Scene, or an iterable of Scenes (blocks of one split, loaded one at a time so a
    large split need not be resident at once), scored in order as one.

    Returns the mean psnr and ssim, mean depth_mae when the scene has true depth, timing and
    per-image figures. Timing: seconds_per_view is the whole evaluation's (render, scoring and
    `on_view`, e.g. writing PNGs) per view; render_seconds_per_view the median of the renders
    alone. `ranks` (training/distributed.py, under torchrun) splits the views among the processes;
    rank 0 receives them all, in order, and the others return None.
    fit_appearance (models with appearance codes): also score each view's right half with the mean
    code and with a code fitted on its left half (inference/appearance_fit.py).
    """
    per_image = []
    device = next(model.parameters()).device
    start = time.perf_counter()
    size, offset = None, 0
    for block in [scene] if isinstance(scene, Scene) else scene:
        size = size or (block.width, block.height)
        _score_block(model, block, offset, info, chunk, device, per_image, on_view, progress, ranks, fit_appearance)
        offset += len(block)
    if ranks is not None and not ranks.writer:
        return None
    elapsed = time.perf_counter() - start
    mean = lambda k: sum(f[k] for f in per_image) / len(per_image)  # noqa: E731
    result = {"psnr": mean("psnr"), "ssim": mean("ssim")}
    if "depth_mae" in per_image[0]:
        result["depth_mae"] = mean("depth_mae")
    if fit_appearance:
        result["psnr_right_mean_code"] = mean("psnr_right_mean_code")
        result["psnr_right_fitted_code"] = mean("psnr_right_fitted_code")
    renders = sorted(f["render_seconds"] for f in per_image)
    result.update({"n_views": len(per_image), "seconds_per_view": elapsed / max(len(per_image), 1),
                   "render_seconds_per_view": renders[len(renders) // 2] if renders else float("nan"),
                   "width": size[0], "height": size[1], "per_image": per_image})
    return result


def _score_block(model, scene, offset: int, info: SceneInfo, chunk: int, device, per_image: list, on_view, progress,
                 ranks, fit_appearance: bool) -> None:
    """score_views on one block of views, numbered from `offset`: figures appended to `per_image`
    (every rank appends its own, rank 0 all of them)."""
    cams = scene.cameras.to(device)

    def score(i):
        t0 = time.perf_counter()
        out = render_view(model, cams, i, info, chunk)
        seconds = time.perf_counter() - t0
        gt = scene.images[i]
        figures = {"name": scene.image_names[i] if scene.image_names else str(offset + i),
                   "psnr": psnr(out["rgb"], gt), "ssim": ssim(out["rgb"], gt), "render_seconds": seconds}
        if scene.depth is not None:
            figures["depth_mae"] = depth_error(out["depth"], scene.depth[i])
        if fit_appearance:
            from nerf.inference.appearance_fit import fit_half_code, right_half_psnr

            code = fit_half_code(model, cams, i, info, gt, seed=i)
            figures["psnr_right_mean_code"] = right_half_psnr(model, lambda: out, gt, None)
            figures["psnr_right_fitted_code"] = right_half_psnr(
                model, lambda: render_view(model, cams, i, info, chunk), gt, code)
        return figures, ({k: v.cpu() for k, v in out.items()} if ranks is not None else out)

    views = ranks.map(len(scene), score) if ranks is not None else ((i, score(i)) for i in range(len(scene)))
    for i, (figures, out) in views:
        per_image.append(figures)
        if on_view is not None:
            on_view(offset + i, figures["name"], out, figures)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(psnr=f"{figures['psnr']:.2f}")
