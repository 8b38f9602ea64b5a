"""The NeRF paper model: coarse and fine MLPs, stratified then hierarchical sampling, MSE on both."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nerf.fields.mlp_field import NeRFField
from nerf.metrics import psnr_from_mse
from nerf.models.base import RENDER, TRAIN, RenderModel
from nerf.render.composite import composite
from nerf.render.rays import RayBundle
from nerf.render.samplers import merge_edges, midpoints, sample_pdf, stratified_edges
from nerf.scene_rays import SceneInfo


@dataclass
class VanillaConfig:
    """Options of the paper model (`model.nerf.*`; the flat `model.n_coarse` spelling of older
    configs is still read): positional-encoding frequencies, MLP depth/width (skip connection
    after layer `skip_layer`), coarse/fine sample counts. Field variants (INR papers), the
    defaults being the paper model: encoding positional | none | gaussian (random Fourier
    features of the position, sigma in cycles per world unit); activation relu | siren (a sine
    trunk with omega_0)."""

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
    encoding: str = "positional"
    gaussian_features: int = 256
    gaussian_sigma: float = 1.0
    activation: str = "relu"
    siren_omega0: float = 30.0

    # the keys that decide the network's parameters (an initialisation fits when they match)
    ARCH_KEYS = ("pos_freqs", "dir_freqs", "depth", "width", "skip_layer", "view_width", "use_viewdirs",
                 "encoding", "gaussian_features", "gaussian_sigma", "activation", "siren_omega0")

    def validate(self) -> list[str]:
        errs = []
        for k in ("pos_freqs", "dir_freqs"):
            if getattr(self, k) < 0:
                errs.append(f"model.nerf.{k}: must be >= 0, got {getattr(self, k)}")
        for k in ("depth", "width", "view_width", "n_coarse"):
            if getattr(self, k) < 1:
                errs.append(f"model.nerf.{k}: must be >= 1, got {getattr(self, k)}")
        if self.n_fine < 0:
            errs.append(f"model.nerf.n_fine: must be >= 0, got {self.n_fine}")
        if self.density_activation not in ("relu", "softplus"):
            errs.append(f"model.nerf.density_activation: must be relu or softplus, got {self.density_activation!r}")
        if self.density_noise < 0:
            errs.append(f"model.nerf.density_noise: must be >= 0, got {self.density_noise}")
        if self.encoding not in ("positional", "none", "gaussian"):
            errs.append(f"model.nerf.encoding: must be positional, none or gaussian, got {self.encoding!r}")
        if self.gaussian_features < 1:
            errs.append(f"model.nerf.gaussian_features: must be >= 1, got {self.gaussian_features}")
        if not self.gaussian_sigma > 0:
            errs.append(f"model.nerf.gaussian_sigma: must be > 0, got {self.gaussian_sigma}")
        if self.activation not in ("relu", "siren"):
            errs.append(f"model.nerf.activation: must be relu or siren, got {self.activation!r}")
        if not self.siren_omega0 > 0:
            errs.append(f"model.nerf.siren_omega0: must be > 0, got {self.siren_omega0}")
        return errs


class VanillaNeRF(RenderModel):
    def __init__(self, cfg: VanillaConfig, info: SceneInfo, precision: str = "fp32", seed: int = 0):
        super().__init__(info, precision, seed)
        self.cfg = m = cfg
        kw = dict(pos_freqs=m.pos_freqs, dir_freqs=m.dir_freqs, depth=m.depth, width=m.width,
                  skip_layer=m.skip_layer, view_width=m.view_width, use_viewdirs=m.use_viewdirs,
                  density_activation=m.density_activation, density_noise=m.density_noise,
                  encoding=m.encoding, gaussian_features=m.gaussian_features, gaussian_sigma=m.gaussian_sigma,
                  activation=m.activation, siren_omega0=m.siren_omega0)
        self.coarse = NeRFField(**kw)
        self.fine = NeRFField(**kw) if m.n_fine > 0 else None

    def _query(self, field, rays: RayBundle, edges: torch.Tensor) -> dict:
        """Evaluate `field` at the midpoints of `edges` (n_rays, n + 1) and composite."""
        t = midpoints(edges)
        n_rays, n = t.shape
        pts = rays.origins[:, None, :] + rays.directions[:, None, :] * t[..., None]
        dirs = rays.view_directions[:, None, :].expand(n_rays, n, 3)
        with self.autocast(pts.device.type):
            sigma, rgb = field(pts.reshape(-1, 3), dirs.reshape(-1, 3))
        return composite(sigma.float().reshape(n_rays, n), rgb.float().reshape(n_rays, n, 3), edges,
                         self.ray_background(rays))

    def forward(self, rays: RayBundle, mode: str = RENDER, generator: torch.Generator | None = None,
                jitter: bool | None = None) -> dict:
        m = self.cfg
        jitter = mode == TRAIN if jitter is None else jitter
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

    def loss(self, outputs: dict, target: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        mse = F.mse_loss(outputs["rgb"], target)
        losses, metrics = {"rgb": mse}, {"psnr": psnr_from_mse(mse.item())}
        if "rgb_coarse" in outputs:
            mse_c = F.mse_loss(outputs["rgb_coarse"], target)
            losses["rgb_coarse"] = mse_c
            metrics["psnr_coarse"] = psnr_from_mse(mse_c.item())
        return losses, metrics
