"""The fast method: a grid-backed field (nerf/fields_fast.py) sampled through an occupancy grid
(render/occupancy.py) and composited from packed samples (render/packed.py).

Per batch: march every ray through the occupied cells at a fixed step, evaluating density
without gradients in a few rounds to find where each ray becomes opaque; then evaluate the
field with gradients only on the samples that matter and composite them packed. Training,
evaluation and video all render this way, except that training skips the no-gradient pass
while it drops little (`_prune_in_training`). The occupancy grid is refreshed in `before_step`
from the field's density, with a generator seeded by (train.seed, step), so a resumed run
refreshes exactly as an uninterrupted one; the grid's state is in buffers, saved with the model.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from nerf.fields_fast import FastField
from nerf.grid_encodings import build_encoding
from nerf.models.base import RenderModel, SceneInfo, psnr_from_mse
from nerf.raygen import ndc_frusta_box
from render.carving import silhouette_hull
from render.occupancy import OccupancyGrid
from render.packed import composite_packed, distortion_loss
from render.rays import RayBundle

NDC_BOX = [[-1.5, -1.5, -1.0], [1.5, 1.5, 1.0]]


class FastNeRF(RenderModel):
    def __init__(self, cfg, info: SceneInfo):
        super().__init__(cfg, info)
        fc = self.fc = cfg.model.fast
        bbox = NDC_BOX if info.ndc else info.bbox
        box = torch.tensor(bbox, dtype=torch.float32)
        step = float((box[1] - box[0]).norm()) / fc.steps
        # Start as a uniform fog whose opacity per marching step (init_alpha) is above the
        # occupancy threshold: every cell stays occupied until training has shown it empty,
        # instead of the first refresh culling half the cells at random around the mean.
        bias = math.log(-math.log(1.0 - fc.init_alpha) / step)
        self.field = FastField(build_encoding(fc, bbox), fc.hidden, fc.geo_features, fc.colour_hidden, fc.sh_degree,
                               density_bias=bias)
        self.grid = OccupancyGrid(box, fc.occ_res, step, fc.occ_threshold, fc.occ_decay)
        # Share of the candidate steps the last probe's density pass kept (see `_prune_in_training`);
        # a buffer, so a resumed run decides as an uninterrupted one.
        self.register_buffer("kept_share", torch.tensor(0.0))
        self._probe = True
        self.bf16 = cfg.train.precision == "bf16"
        self.seed = cfg.train.seed

    def _autocast(self, device_type: str):
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Density without gradients (m,), for marching and occupancy refreshes."""
        with self._autocast(x.device.type):
            return self.field.density(x).float()

    def prepare(self, scene) -> None:
        """Before a fresh run: carve the occupancy grid to the training silhouettes (visual hull)
        when the capture has alpha, so the first steps sample only where content can be; then
        (`fit_box`) span the grid encoding over the box that content can occupy, as TensoRF
        shrinks its box, so its cells are spent on the content: the hull's box when carved, the
        training cameras' frusta in NDC."""
        grid = self.grid
        carve = self.fc.carve and scene.alpha is not None and not self.info.ndc
        if carve:
            centres = grid.cell_centres(torch.arange(grid.res ** 3, device=grid.opacity.device))
            grid.restrict(silhouette_hull(centres, scene.cameras, scene.alpha.to(centres.device), grid.cell_radius()))
        if not self.fc.fit_box:
            return
        if carve:
            pad = (grid.bbox[1] - grid.bbox[0]) / grid.res  # one occupancy cell
            box = torch.stack([grid.occupied_box[0] - pad, grid.occupied_box[1] + pad])
        elif self.info.ndc:
            box = ndc_frusta_box(scene.cameras, self.info)
        else:
            return
        lo, hi = torch.maximum(box[0], grid.bbox[0]), torch.minimum(box[1], grid.bbox[1])
        if bool((hi > lo).all()):
            self.field.encoding.fit_box(torch.stack([lo, hi]))

    def grid_schedule(self) -> dict[int, int]:
        """Coarse-to-fine: {step: grid resolution from that step on}, empty when off. Resolutions
        grow by an equal ratio from grid_res_start to grid_res (TensoRF's log-linear schedule)."""
        fc = self.fc
        if not fc.grid_res_start or fc.grid_res_start >= fc.grid_res:
            return {}
        n, lo, hi = fc.grid_upsample_count, math.log(fc.grid_res_start), math.log(fc.grid_res)
        return {round(fc.grid_upsample_until * i / n): round(math.exp(lo + (hi - lo) * i / n)) for i in range(1, n + 1)}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.setdefault(prefix + "kept_share", torch.zeros_like(self.kept_share))  # saved before it existed
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _prune_in_training(self) -> bool:
        """Whether a training batch runs the no-gradient density pass that drops the steps behind
        opaque surfaces (transmittance below early_stop) before the pass with gradients.

        On a capture whose rays seldom turn opaque inside the occupied cells (fern: 98% of the
        steps kept) the pass costs a density evaluation per step and saves almost nothing, so it
        is skipped while the last probe (every occ_update_every steps) kept more than
        1 - prune_min_share of the steps: the gradient pass then also sees the few steps behind
        opaque surfaces, whose compositing weights are below early_stop. Always on when
        alpha_min > 0 (it needs the densities)."""
        fc = self.fc
        return self._probe or fc.alpha_min > 0 or float(self.kept_share) <= 1.0 - fc.prune_min_share

    def before_step(self, step: int) -> bool:
        fc, resized = self.fc, False
        self._probe = step % fc.occ_update_every == 0
        res = self.grid_schedule().get(step)
        if res is not None and res != self.field.encoding.res:
            self.field.encoding.resize(res)
            resized = True
        if step % fc.occ_update_every == 0:
            gen = torch.Generator(device=self.grid.opacity.device).manual_seed(self.seed * 1_000_003 + step)
            self.grid.update(self.density, gen, warmup=step < fc.occ_warmup, n_cells=fc.occ_cells)
        return resized

    def forward(self, rays: RayBundle, jitter: bool, generator: torch.Generator | None = None) -> dict:
        n = len(rays)
        o, d = rays.origins, rays.directions
        if jitter:
            offset = torch.rand(n, generator=generator, device=o.device, dtype=o.dtype)
        else:
            offset = torch.full((n,), 0.5, device=o.device, dtype=o.dtype)
        fc, vdirs = self.fc, rays.view_directions
        if torch.is_grad_enabled():
            # march on density alone, then evaluate the kept samples with gradients
            prune = not self.training or self._prune_in_training()
            t, ray_idx, evaluated = self.grid.march(o, d, rays.near, rays.far, offset,
                                                    self.density if prune else None, fc.early_stop, fc.alpha_min)
            if self.training and self._probe and evaluated:
                self.kept_share.fill_(t.numel() / evaluated)
            sigma = rgb = None
        else:  # rendering: colour comes with the marching rounds, one field evaluation per sample
            def field_fn(pts, r_idx):
                with self._autocast(pts.device.type):
                    return self.field.density_features(pts)

            def colour_fn(features, r_idx):  # only for the samples that are kept
                with self._autocast(features.device.type):
                    return self.field.colour(features, vdirs[r_idx]).float()

            t, ray_idx, evaluated, sigma, rgb = self.grid.march_field(o, d, rays.near, rays.far, offset, field_fn,
                                                                      fc.render_early_stop or fc.early_stop,
                                                                      fc.alpha_min,
                                                                      fc.render_first_round, payload_fn=colour_fn,
                                                                      weight_min=fc.render_weight_min)
        half = 0.5 * self.grid.step
        t_start, t_end = t - half, t + half
        if t.numel() == 0:  # nothing occupied: one empty interval keeps the graph for backward
            t = t_start = t_end = rays.near[:1, 0]
            ray_idx = torch.zeros(1, dtype=torch.long, device=o.device)
            sigma = rgb = None
        if sigma is None:
            pts = o[ray_idx] + d[ray_idx] * t[:, None]
            with self._autocast(o.device.type):
                sigma, rgb = self.field(pts, vdirs[ray_idx])  # real directions, also in NDC
        background = self.background
        if background is None and fc.random_background and self.training and jitter:
            background = torch.rand(n, 3, generator=generator, device=o.device)
        out = composite_packed(sigma.float(), rgb.float(), t_start, t_end, ray_idx, n, background, rays.far)
        if fc.distortion_weight > 0 and torch.is_grad_enabled():
            # on depths normalised to [0, 1] between each ray's near and far (NDC t already is)
            near, span = rays.near[ray_idx, 0], (rays.far - rays.near)[ray_idx, 0]
            out["distortion"] = distortion_loss(out["weights"], (t_start - near) / span, (t_end - near) / span,
                                                ray_idx, n).mean()
        out["ray_idx"] = ray_idx  # the ray of each sample in out["weights"]
        out["samples_per_ray"] = float(t_start.numel()) / max(n, 1)
        out["evaluated_per_ray"] = float(evaluated) / max(n, 1)
        return out

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mse = F.mse_loss(outputs["rgb"], target)
        logs = {"psnr": psnr_from_mse(mse.item())}
        loss = mse
        if self.fc.tv_weight > 0:
            tv = self.field.encoding.total_variation()
            logs["tv"] = float(tv.detach())
            loss = loss + self.tv_weight() * tv
        if "distortion" in outputs:
            logs["distortion"] = float(outputs["distortion"].detach())
            loss = loss + self.fc.distortion_weight * outputs["distortion"]
        return loss, logs

    def tv_weight(self) -> float:
        """model.fast.tv_weight, times the learning rate's decay so far with tv_decay (TensoRF's
        schedule: a strong prior early, against floaters, that lets fine detail in late)."""
        return self.fc.tv_weight * (self.lr_decay if self.fc.tv_decay else 1.0)

    def param_groups(self, lr: float) -> list[dict]:
        s = self.fc.grid_lr_scale
        return [{"params": self.field.grid_parameters(), "lr": lr * s, "lr_scale": s},
                {"params": self.field.mlp_parameters(), "lr": lr, "lr_scale": 1.0}]
