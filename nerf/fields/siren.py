"""SIREN (Sitzmann et al. 2020): MLPs with sine activations and the initialisation that keeps them trainable.

A sine layer computes sin(omega_0 (W x + b)). Hidden layers draw W ~ U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0)
(n = fan-in): if the inputs x are arcsine-distributed on [-1, 1] (variance 1/2), as a sine of a
wide-spread argument is, the pre-activation omega_0 W x has variance n * (2/n) * (1/2) = 1: unit
scale, layer after layer, whatever the width. The first layer sees the raw coordinates in [-1, 1]
and draws W ~ U(-1/n, 1/n), so omega_0 W x spans several periods of the sine. Biases: the
first layer keeps PyTorch's U(-1/sqrt(n), 1/sqrt(n)) (a spread of phases); hidden layers draw
them like their weights (adding only 2/n to the pre-activation variance).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class SineLayer(nn.Linear):
    """sin(omega_0 * (x W^T + b)); (..., in_features) -> (..., out_features).

    A subclass of nn.Linear, so its state-dict keys are those of a plain linear layer.
    """

    def __init__(self, in_features: int, out_features: int, omega0: float = 30.0, is_first: bool = False):
        super().__init__(in_features, out_features)
        self.omega0, self.is_first = float(omega0), is_first
        self.siren_init_()

    @torch.no_grad()
    def siren_init_(self) -> None:
        n = self.in_features
        if self.is_first:
            self.weight.uniform_(-1.0 / n, 1.0 / n)
        else:
            bound = math.sqrt(6.0 / n) / self.omega0
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """omega_0 (W x + b), the argument of the sine."""
        return self.omega0 * super().forward(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.preactivation(x))


def siren_linear_init_(layer: nn.Linear, omega0: float) -> nn.Linear:
    """A linear output layer after sine layers: weights and biases in +-sqrt(6/n)/omega_0, as SIREN's last layer."""
    bound = math.sqrt(6.0 / layer.in_features) / omega0
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound)
        layer.bias.uniform_(-bound, bound)
    return layer


class Siren(nn.Module):
    """A SIREN: `depth` sine layers of `width` (the first one on the input), then a linear layer.

    (..., in_dim) -> (..., out_dim); inputs are expected in about [-1, 1].
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 256, depth: int = 4, omega0: float = 30.0,
                 first_omega0: float | None = None):
        super().__init__()
        first = first_omega0 if first_omega0 is not None else omega0
        layers = [SineLayer(in_dim, width, first, is_first=True)]
        layers += [SineLayer(width, width, omega0) for _ in range(depth - 1)]
        self.layers = nn.ModuleList(layers)
        self.out = siren_linear_init_(nn.Linear(width, out_dim), omega0)

    def preactivations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The argument of every sine, layer by layer (for checking the initialisation)."""
        pre = []
        for layer in self.layers:
            z = layer.preactivation(x)
            pre.append(z)
            x = torch.sin(z)
        return pre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.out(x)
