"""The NeRF paper model: coarse and fine MLPs, stratified then hierarchical sampling, MSE on both."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nerf.fields import NeRFField
from nerf.models.base import RenderModel, SceneInfo, psnr_from_mse
from render.composite import composite
from render.rays import RayBundle
from render.samplers import merge_edges, midpoints, sample_pdf, stratified_edges


class VanillaNeRF(RenderModel):
    def __init__(self, cfg, info: SceneInfo):
        super().__init__(cfg, info)
        m = cfg.model
        kw = dict(pos_freqs=m.pos_freqs, dir_freqs=m.dir_freqs, depth=m.depth, width=m.width,
                  skip_layer=m.skip_layer, view_width=m.view_width, use_viewdirs=m.use_viewdirs,
                  density_activation=m.density_activation, density_noise=m.density_noise,
                  encoding=m.encoding, gaussian_features=m.gaussian_features, gaussian_sigma=m.gaussian_sigma,
                  activation=m.activation, siren_omega0=m.siren_omega0)
        self.coarse = NeRFField(**kw)
        self.fine = NeRFField(**kw) if m.n_fine > 0 else None
        self.bf16 = cfg.train.precision == "bf16"

    def _query(self, field, rays: RayBundle, edges: torch.Tensor) -> dict:
        """Evaluate `field` at the midpoints of `edges` (n_rays, n + 1) and composite."""
        t = midpoints(edges)
        n_rays, n = t.shape
        pts = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]
        dirs = rays.view_directions[:, None, :].expand(n_rays, n, 3)
        with torch.autocast(device_type=pts.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            sigma, rgb = field(pts.reshape(-1, 3), dirs.reshape(-1, 3))
        return composite(sigma.float().reshape(n_rays, n), rgb.float().reshape(n_rays, n, 3), edges, self.background)

    def forward(self, rays: RayBundle, jitter: bool, generator: torch.Generator | None = None) -> dict:
        m = self.cfg.model
        edges = stratified_edges(rays.near, rays.far, m.n_coarse, jitter, m.lindisp, generator)
        coarse = self._query(self.coarse, rays, edges)
        if self.fine is None:
            return {**coarse, "samples_per_ray": float(m.n_coarse)}
        extra = sample_pdf(edges, coarse["weights"], m.n_fine,
                           deterministic=not jitter, generator=generator)
        fine = self._query(self.fine, rays, merge_edges(edges, extra))
        out = dict(fine)
        out["rgb_coarse"] = coarse["rgb"]
        out["depth_coarse"] = coarse["depth"]
        out["samples_per_ray"] = float(m.n_coarse + m.n_coarse + m.n_fine)
        return out

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        mse = F.mse_loss(outputs["rgb"], target)
        logs = {"psnr": psnr_from_mse(mse.item())}
        total = mse
        if "rgb_coarse" in outputs:
            mse_c = F.mse_loss(outputs["rgb_coarse"], target)
            total = total + mse_c
            logs["psnr_coarse"] = psnr_from_mse(mse_c.item())
        return total, logs
