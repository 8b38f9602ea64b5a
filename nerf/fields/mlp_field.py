"""Radiance fields: (positions, directions) -> (density, colour), the callable `render` expects."""
from __future__ import annotations

import torch
from torch import nn

from nerf.fields.encodings import PositionalEncoding, make_encoding
from nerf.fields.siren import SineLayer


class NeRFField(nn.Module):
    """The NeRF paper's MLP.

    `depth` ReLU layers of `width` on the encoded position, with the encoded position concatenated
    again after layer `skip_layer` (0-based, as in the reference code); density from position only;
    colour from a feature vector plus the encoded view direction through one `view_width` layer.
    positions, directions: (n, 3) -> density (n,) >= 0, rgb (n, 3) in (0, 1).

    Variants (the defaults are the paper model): `encoding` of the position: positional (the
    paper's, `pos_freqs`), none (raw coordinates), gaussian (random Fourier features,
    `gaussian_features` of scale `gaussian_sigma`); `activation` of the position trunk: relu, or
    siren (sine layers with `siren_omega0` and SIREN's initialisation; the heads and the view
    layer stay as in the paper). The view direction always uses the positional encoding with
    `dir_freqs` (0 = raw directions).
    """

    def __init__(self, pos_freqs=10, dir_freqs=4, depth=8, width=256, skip_layer=4, view_width=128,
                 use_viewdirs=True, density_activation="relu", density_noise=0.0, encoding="positional",
                 gaussian_features=256, gaussian_sigma=1.0, activation="relu", siren_omega0=30.0):
        super().__init__()
        self.pos_enc = make_encoding(encoding, 3, pos_freqs, gaussian_features, gaussian_sigma)
        self.dir_enc = PositionalEncoding(dir_freqs)
        self.siren = activation == "siren"
        self.skip_layer, self.use_viewdirs, self.density_noise = skip_layer, use_viewdirs, density_noise
        self.density_activation = nn.ReLU() if density_activation == "relu" else nn.Softplus()
        in_dim = self.pos_enc.out_dim
        if self.siren:
            layers = [SineLayer(in_dim, width, siren_omega0, is_first=True)]
            layers += [SineLayer(width + (in_dim if i == skip_layer else 0), width, siren_omega0)
                       for i in range(depth - 1)]
        else:
            layers = [nn.Linear(in_dim, width)]
            for i in range(depth - 1):
                layers.append(nn.Linear(width + (in_dim if i == skip_layer else 0), width))
        self.layers = nn.ModuleList(layers)
        if use_viewdirs:
            self.density_head = nn.Linear(width, 1)
            self.feature = nn.Linear(width, width)
            self.view_layer = nn.Linear(width + self.dir_enc.out_dim, view_width)
            self.rgb_head = nn.Linear(view_width, 3)
        else:
            self.out = nn.Linear(width, 4)

    def forward(self, positions: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pos_enc(positions)
        h = x
        for i, layer in enumerate(self.layers):
            h = layer(h) if self.siren else torch.relu(layer(h))
            if i == self.skip_layer and i < len(self.layers) - 1:
                h = torch.cat([x, h], -1)
        if self.use_viewdirs:
            raw_sigma = self.density_head(h)[..., 0]
            feat = self.feature(h)
            v = torch.relu(self.view_layer(torch.cat([feat, self.dir_enc(directions)], -1)))
            raw_rgb = self.rgb_head(v)
        else:
            out = self.out(h)
            raw_sigma, raw_rgb = out[..., 3], out[..., :3]
        if self.training and self.density_noise > 0:
            raw_sigma = raw_sigma + torch.randn_like(raw_sigma) * self.density_noise
        return self.density_activation(raw_sigma.float()), torch.sigmoid(raw_rgb.float())
