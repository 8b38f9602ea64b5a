"""Field options of the INR papers: Gaussian Fourier features, no encoding, SIREN; config keys."""
from __future__ import annotations

import math

import pytest
import torch
from conftest import DEVICE

from nerf.config import load_config
from nerf.errors import ConfigError
from nerf.fields.encodings import GaussianFourierFeatures, NoEncoding, PositionalEncoding, make_encoding
from nerf.fields.mlp_field import NeRFField
from nerf.fields.siren import SineLayer, Siren

TINY = ["data.synthetic.resolution=16", "data.synthetic.n_train=4", "data.synthetic.n_test=2",
        "data.synthetic.n_val=1", "data.synthetic.supersample=1", "model.depth=2", "model.width=32",
        "model.view_width=16", "model.n_coarse=8", "model.n_fine=8", "train.batch_rays=64", "train.max_steps=2",
        "train.eval_every=0", "train.checkpoint_every=2", "train.threads=1"]


def test_gaussian_features_have_the_configured_sigma_and_shapes():
    enc = GaussianFourierFeatures(n_features=4096, sigma=3.5, in_dim=3, generator=torch.Generator().manual_seed(0))
    assert enc.B.shape == (4096, 3)
    assert enc.out_dim == 8192
    # 12288 i.i.d. N(0, 3.5^2) draws: the sample std is within 2% of sigma (its std error is 0.6%)
    assert enc.B.std().item() == pytest.approx(3.5, rel=0.02)
    assert abs(enc.B.mean().item()) < 0.1
    x = torch.rand(5, 7, 3)
    out = enc(x)
    assert out.shape == (5, 7, 8192)
    proj = 2 * math.pi * x @ enc.B.T
    torch.testing.assert_close(out[..., :4096], torch.cos(proj), rtol=0, atol=1e-4)  # arguments up to ~150 rad
    torch.testing.assert_close(out[..., 4096:], torch.sin(proj), rtol=0, atol=1e-4)
    assert "B" in enc.state_dict()  # fixed, but saved with the model


def test_gaussian_sigma_scales_B_and_generator_makes_it_reproducible():
    a = GaussianFourierFeatures(256, 1.0, 2, torch.Generator().manual_seed(7))
    b = GaussianFourierFeatures(256, 10.0, 2, torch.Generator().manual_seed(7))
    torch.testing.assert_close(b.B, 10.0 * a.B)


def test_make_encoding_by_name():
    assert isinstance(make_encoding("positional", 3, n_freqs=10), PositionalEncoding)
    assert make_encoding("positional", 3, n_freqs=10).out_dim == 63
    assert isinstance(make_encoding("none", 2), NoEncoding) and make_encoding("none", 2).out_dim == 2
    assert make_encoding("gaussian", 2, n_features=16, sigma=2.0).out_dim == 32
    with pytest.raises(ValueError):
        make_encoding("hash", 3)


def test_field_takes_encoding_and_activation():
    paper = NeRFField()
    assert isinstance(paper.pos_enc, PositionalEncoding) and paper.layers[0].in_features == 63
    assert not isinstance(paper.layers[0], SineLayer)
    g = NeRFField(depth=3, width=32, skip_layer=1, encoding="gaussian", gaussian_features=64, gaussian_sigma=2.0)
    assert g.pos_enc.B.shape == (64, 3) and g.layers[0].in_features == 128 and g.layers[2].in_features == 32 + 128
    plain = NeRFField(depth=3, width=32, encoding="none")
    assert plain.layers[0].in_features == 3
    siren = NeRFField(depth=3, width=32, skip_layer=1, encoding="none", activation="siren", siren_omega0=20.0)
    assert all(isinstance(layer, SineLayer) for layer in siren.layers)
    assert siren.layers[0].is_first and siren.layers[1].omega0 == 20.0
    assert set(siren.state_dict()) == set(plain.state_dict())  # sine layers keep linear-layer keys
    pos, dirs = torch.randn(50, 3), torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    for field in (g, plain, siren):
        sigma, rgb = field(pos, dirs)
        assert sigma.shape == (50,) and rgb.shape == (50, 3)
        assert torch.isfinite(sigma).all() and (sigma >= 0).all() and ((rgb > 0) & (rgb < 1)).all()


def test_siren_init_gives_unit_scale_preactivations_layer_after_layer():
    torch.manual_seed(0)
    net = Siren(2, 3, width=256, depth=8, omega0=30.0)
    x = torch.rand(8192, 2) * 2 - 1
    with torch.no_grad():
        stds = [z.std().item() for z in net.preactivations(x)]
        means = [z.mean().item() for z in net.preactivations(x)]
    # layer 2 sees sin of a many-period argument (arcsine, variance 1/2): variance n * (2/n) * (1/2) = 1
    assert stds[1] == pytest.approx(1.0, abs=0.05)
    # deeper layers stay at unit scale (a fixed point near 0.9), neither exploding nor vanishing
    for s in stds[1:]:
        assert 0.8 < s < 1.2
    assert max(stds[1:]) / min(stds[1:]) < 1.2
    assert all(abs(m) < 0.1 for m in means[1:])
    # the first layer spans several periods of the sine: omega_0 W x with W ~ U(-1/2, 1/2)
    assert stds[0] > 5.0


def test_siren_initialisation_is_what_keeps_the_scale():
    """The same sine network with PyTorch's default linear initialisation is far from unit scale."""
    torch.manual_seed(0)
    net = Siren(2, 3, width=256, depth=6, omega0=30.0)
    for layer in net.layers:
        torch.nn.Linear.reset_parameters(layer)
    with torch.no_grad():
        stds = [z.std().item() for z in net.preactivations(torch.rand(4096, 2) * 2 - 1)]
    assert min(stds[1:]) > 5.0


def test_siren_weight_bounds():
    layer = SineLayer(100, 50, omega0=30.0)
    assert layer.weight.abs().max().item() <= math.sqrt(6 / 100) / 30.0
    first = SineLayer(2, 50, omega0=30.0, is_first=True)
    assert first.weight.abs().max().item() <= 0.5


def test_config_keys_default_to_the_paper_model_and_are_validated():
    cfg = load_config(None, [])
    m = cfg.model.nerf
    assert (m.encoding, m.activation) == ("positional", "relu")
    # the flat spelling of older configs still sets the paper model's keys
    cfg = load_config(None, ["model.encoding=gaussian", "model.nerf.gaussian_sigma=4", "model.gaussian_features=32",
                             "model.activation=siren", "model.siren_omega0=10"])
    m = cfg.model.nerf
    assert (m.encoding, m.gaussian_sigma, m.gaussian_features, m.siren_omega0) == ("gaussian", 4.0, 32, 10.0)
    for bad, key in (("model.encoding=hash", "model.nerf.encoding"),
                     ("model.gaussian_sigma=0", "model.nerf.gaussian_sigma"),
                     ("model.activation=tanh", "model.nerf.activation"),
                     ("model.siren_omega0=-1", "model.nerf.siren_omega0"),
                     ("model.gaussian_features=0", "model.nerf.gaussian_features")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [bad])


@pytest.mark.parametrize("variant", [["model.encoding=none"], ["model.encoding=gaussian", "model.gaussian_sigma=1"],
                                     ["model.encoding=none", "model.activation=siren", "model.siren_omega0=10"]])
def test_variants_train_with_the_trainer(tmp_path, variant):
    from nerf.training.trainer import Trainer

    cfg = load_config(None, TINY + variant)
    trainer = Trainer(cfg, tmp_path / "run", DEVICE, log=lambda *a: None, show_progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.train()
    assert result.step == 2
    assert (tmp_path / "run" / "checkpoints" / "step_0000002.pt").is_file()
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])]
    assert any("layers.0.weight" in k for k in changed)
    assert not any(k.endswith(".B") for k in changed)  # Gaussian B stays fixed
