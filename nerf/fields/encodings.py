"""Input encodings for coordinate networks."""
from __future__ import annotations

import torch
from torch import nn


class PositionalEncoding(nn.Module):
    """NeRF's frequency encoding: [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

    (..., d) -> (..., d * (2L + include_input)), frequencies 2^k without a factor of pi, as in the
    paper's reference code (inputs are world coordinates of order 1).
    """

    def __init__(self, n_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        self.n_freqs, self.include_input, self.in_dim = n_freqs, include_input, in_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (2 * self.n_freqs + int(self.include_input))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = x[..., None, :] * self.freqs[:, None]  # (..., L, d)
        feats = torch.stack([torch.sin(scaled), torch.cos(scaled)], dim=-2)  # (..., L, 2, d)
        feats = feats.flatten(-3)
        return torch.cat([x, feats], -1) if self.include_input else feats


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features (Tancik et al. 2020): [cos(2 pi B x), sin(2 pi B x)].

    B (n_features, d) has i.i.d. N(0, sigma^2) entries, drawn once from `generator` (the global
    torch RNG when None) and then fixed: it is a persistent buffer, so checkpoints and learned
    initialisations carry it. sigma is in cycles per unit of the input coordinates.
    (..., d) -> (..., 2 * n_features).
    """

    def __init__(self, n_features: int, sigma: float, in_dim: int = 3, generator: torch.Generator | None = None):
        super().__init__()
        self.n_features, self.sigma, self.in_dim = n_features, float(sigma), in_dim
        self.register_buffer("B", torch.randn(n_features, in_dim, generator=generator) * sigma)

    @property
    def out_dim(self) -> int:
        return 2 * self.n_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = (2.0 * torch.pi) * (x @ self.B.T)  # (..., m)
        return torch.cat([torch.cos(proj), torch.sin(proj)], -1)


class NoEncoding(nn.Module):
    """The raw coordinates: (..., d) -> (..., d)."""

    def __init__(self, in_dim: int = 3):
        super().__init__()
        self.in_dim = in_dim

    @property
    def out_dim(self) -> int:
        return self.in_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


ENCODINGS = ("positional", "none", "gaussian")


def make_encoding(kind: str, in_dim: int = 3, n_freqs: int = 10, n_features: int = 256, sigma: float = 1.0,
                  generator: torch.Generator | None = None) -> nn.Module:
    """An encoding by name: positional (NeRF, `n_freqs`), none, or gaussian (`n_features`, `sigma`)."""
    if kind == "positional":
        return PositionalEncoding(n_freqs, in_dim=in_dim)
    if kind == "none":
        return NoEncoding(in_dim)
    if kind == "gaussian":
        return GaussianFourierFeatures(n_features, sigma, in_dim, generator)
    raise ValueError(f"unknown encoding {kind!r}; known: {', '.join(ENCODINGS)}")
