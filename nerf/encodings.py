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
