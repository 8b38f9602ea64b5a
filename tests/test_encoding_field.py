"""Positional encoding frequencies and the paper MLP's structure."""
import math

import torch

from nerf.fields.encodings import PositionalEncoding
from nerf.fields.mlp_field import NeRFField


def test_positional_encoding_has_exact_frequencies():
    enc = PositionalEncoding(10)
    assert enc.out_dim == 63
    x = torch.tensor([[0.3, -1.2, 2.5]])
    out = enc(x)[0]
    assert torch.equal(out[:3], x[0])
    for k in range(10):
        f = 2.0**k
        block = out[3 + 6 * k: 3 + 6 * (k + 1)]
        assert torch.allclose(block[:3], torch.sin(f * x[0]), atol=1e-5)
        assert torch.allclose(block[3:], torch.cos(f * x[0]), atol=1e-5)
    assert PositionalEncoding(4).out_dim == 27


def test_encoding_period_of_highest_frequency():
    enc = PositionalEncoding(3, include_input=False, in_dim=1)
    x = torch.tensor([[0.1]])
    # the highest frequency is 4: shifting by 2*pi/4 repeats it, the lower ones do not
    shifted = enc(x + 2 * math.pi / 4)
    assert torch.allclose(enc(x)[0, 4:], shifted[0, 4:], atol=1e-5)
    assert not torch.allclose(enc(x)[0, :4], shifted[0, :4], atol=1e-3)


def test_paper_field_shapes_and_parameter_count():
    field = NeRFField()
    pos, dirs = torch.randn(17, 3), torch.nn.functional.normalize(torch.randn(17, 3), dim=-1)
    sigma, rgb = field(pos, dirs)
    assert sigma.shape == (17,) and rgb.shape == (17, 3)
    assert torch.all(sigma >= 0) and torch.all((rgb > 0) & (rgb < 1))
    # 8 layers of 256 with the input re-injected after layer 4 (0-based), density head, feature,
    # a 128-wide view layer on feature + 27 direction features, rgb head: the reference model's size
    expected = (63 * 256 + 256) + 4 * (256 * 256 + 256) + ((256 + 63) * 256 + 256) + 2 * (256 * 256 + 256) \
        + (256 + 1) + (256 * 256 + 256) + ((256 + 27) * 128 + 128) + (128 * 3 + 3)
    assert sum(p.numel() for p in field.parameters()) == expected == 595844


def test_density_does_not_depend_on_direction():
    field = NeRFField(depth=3, width=32, view_width=16, skip_layer=1)
    pos = torch.randn(5, 3)
    s1, c1 = field(pos, torch.tensor([[0.0, 0, 1]]).expand(5, 3))
    s2, c2 = field(pos, torch.tensor([[1.0, 0, 0]]).expand(5, 3))
    assert torch.equal(s1, s2)
    assert not torch.allclose(c1, c2)
