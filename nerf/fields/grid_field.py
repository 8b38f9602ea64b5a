"""A grid-backed radiance field: a position encoding (hash / factorised / dense grid) feeding a
small density MLP, whose geometry features plus the spherical-harmonics encoded view direction
feed a small colour MLP. positions, directions (n, 3) -> density (n,) >= 0, rgb (n, 3) in (0, 1).
"""
from __future__ import annotations

import torch
from torch import nn

from nerf.fields.grids import SphericalHarmonics


class _TruncExp(torch.autograd.Function):
    """exp(x) with the gradient's exponent clamped at 15, so a large raw density cannot blow up
    the update (Instant-NGP's density activation)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


def bucket_rows(n: int) -> int:
    """n rounded up to one of 8-16 sizes per octave (multiples of 64 below 1024): at most an
    eighth more rows, and few distinct sizes over a run."""
    step = max(64, 1 << max(n.bit_length() - 4, 0))
    return -(-n // step) * step


def bucketed(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """mlp(x), under low-precision autocast on rows padded with zeros to `bucket_rows`. A bf16
    matrix product on the CPU builds and caches a kernel per new shape, and the number of samples
    changes at every step: padded, a run meets a few dozen shapes and reuses their kernels. The
    padded rows' outputs are cut off, so they get no gradient and change nothing."""
    n = x.shape[0]
    if not torch.is_autocast_enabled(x.device.type):
        return mlp(x)
    m = bucket_rows(n)
    if m == n:
        return mlp(x)
    return mlp(torch.cat([x, x.new_zeros((m - n,) + x.shape[1:])]))[:n]


class FastField(nn.Module):
    def __init__(self, encoding: nn.Module, hidden: int = 64, geo_features: int = 15, colour_hidden: int = 64,
                 sh_degree: int = 4, density_bias: float = 0.0, appearance_dim: int = 0,
                 appearance_mode: str = "affine", reflect: bool = False):
        super().__init__()
        self.encoding = encoding
        self.geo_features = geo_features
        self.density_mlp = nn.Sequential(nn.Linear(encoding.out_dim, hidden), nn.ReLU(inplace=True),
                                         nn.Linear(hidden, 1 + geo_features))
        with torch.no_grad():  # initial density exp(density_bias) everywhere
            self.density_mlp[-1].bias[0] = density_bias
        self.dir_enc = SphericalHarmonics(sh_degree)
        # a per-image code either sets a colour transform of the head's output (affine: a gain and
        # an offset per channel, so a code can change exposure and white balance but cannot
        # paint a photo's content onto the view directions), or joins the head's input (head)
        self.appearance_dim, self.appearance_mode = appearance_dim, appearance_mode
        head_codes = appearance_dim if appearance_mode == "head" else 0
        self.appearance_affine = None
        if appearance_dim and appearance_mode == "affine":
            self.appearance_affine = nn.Linear(appearance_dim, 6)
            nn.init.zeros_(self.appearance_affine.weight)
            nn.init.zeros_(self.appearance_affine.bias)
        # reflect: the head also sees the view direction mirrored about a normal read linearly off the
        # geometry features (Ref-NeRF's reflected direction, with the normal learned, not derived
        # from the density): a highlight is a fixed lobe around the mirrored direction, which the
        # head then need not build from the view direction and the features by itself
        self.normal_head = nn.Linear(geo_features, 3) if reflect else None
        n_dir = self.dir_enc.out_dim * (2 if reflect else 1)
        self.colour_mlp = nn.Sequential(nn.Linear(geo_features + n_dir + head_codes, colour_hidden),
                                        nn.ReLU(inplace=True),
                                        nn.Linear(colour_hidden, colour_hidden), nn.ReLU(inplace=True),
                                        nn.Linear(colour_hidden, 3))

    def grid_parameters(self) -> list[nn.Parameter]:
        return list(self.encoding.parameters())

    def mlp_parameters(self) -> list[nn.Parameter]:
        extra = [] if self.appearance_affine is None else list(self.appearance_affine.parameters())
        if self.normal_head is not None:
            extra += list(self.normal_head.parameters())
        return list(self.density_mlp.parameters()) + list(self.colour_mlp.parameters()) + extra

    def _geometry(self, x: torch.Tensor) -> torch.Tensor:
        return bucketed(self.density_mlp, self.encoding(x))

    def density(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 3) -> (n,) density."""
        return trunc_exp(self._geometry(x)[:, 0].float())

    def density_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 3) -> density (n,) and the geometry features (n, geo_features) `colour` needs."""
        h = self._geometry(x)
        return trunc_exp(h[:, 0].float()), h[:, 1:]

    def colour(self, features: torch.Tensor, d: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """Geometry features (n, geo_features) seen from directions (n, 3), with appearance codes
        (n, appearance_dim) when the field has them -> rgb (n, 3)."""
        parts = [features, self.dir_enc(d).to(features.dtype)]
        if self.normal_head is not None:
            normal = nn.functional.normalize(self.normal_head(features.float()), dim=-1)
            mirrored = d - 2.0 * (d * normal).sum(-1, keepdim=True) * normal
            parts.append(self.dir_enc(mirrored).to(features.dtype))
        if self.appearance_dim and self.appearance_affine is None:
            parts.append(appearance.to(features.dtype))
        rgb = torch.sigmoid(bucketed(self.colour_mlp, torch.cat(parts, -1)).float())
        if self.appearance_affine is not None:
            gain, offset = self.appearance_affine(appearance.float()).split(3, dim=-1)
            rgb = rgb * torch.exp(gain) + offset
        return rgb

    def forward(self, x: torch.Tensor, d: torch.Tensor,
                appearance: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        sigma, features = self.density_features(x)
        return sigma, self.colour(features, d, appearance)
