"""bf16 matrix products on padded rows: the buckets stay few and tight, and padding changes
neither the outputs nor the gradients of the real rows."""
from pathlib import Path

import torch
from torch import nn

from nerf.fields.grid_field import FastField, bucket_rows, bucketed


def test_buckets_are_tight_and_few():
    sizes = {bucket_rows(n) for n in range(1, 300_001)}
    assert all(bucket_rows(n) >= n for n in (1, 63, 64, 65, 1023, 1024, 1025, 99_999, 262_145))
    assert max(bucket_rows(n) / n for n in range(1024, 300_001)) <= 1.125
    assert max(bucket_rows(n) - n for n in range(1, 1024)) < 64
    assert len(sizes) < 150  # against 300000 shapes unpadded


def test_padding_leaves_outputs_and_gradients_unchanged():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(31, 64), nn.ReLU(), nn.Linear(64, 3))
    x = torch.randn(1500, 31)  # buckets to 1536: 36 padded rows
    assert bucket_rows(1500) == 1536
    grads = []
    for pad in (False, True):
        mlp.zero_grad()
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = bucketed(mlp, xi) if pad else mlp(xi)
        assert y.shape == (1500, 3)
        (y.float() * torch.linspace(-1, 1, 3)).sum().backward()
        grads.append((y.float().detach(), xi.grad, mlp[0].weight.grad.clone()))
    (y0, gx0, gw0), (y1, gx1, gw1) = grads
    torch.testing.assert_close(y1, y0, rtol=0, atol=2e-2)
    torch.testing.assert_close(gx1, gx0, rtol=0, atol=2e-2)
    torch.testing.assert_close(gw1, gw0, rtol=2e-2, atol=0.5)
    assert gw0.abs().max() > 1.0  # the weight gradient is a sum over 1500 rows: a loose bound still bites
    # without autocast nothing is padded: exactly the plain product
    torch.testing.assert_close(bucketed(mlp, x), mlp(x), rtol=0, atol=0)


def test_precision_auto_follows_the_machine():
    from nerf.models.base import RenderModel, native_bf16
    from nerf.scene_rays import SceneInfo

    info = SceneInfo(near=0.1, far=1.0, bbox=[[-1.0] * 3, [1.0] * 3], background=None)
    expected = {"fp32": False, "bf16": True, "auto": native_bf16("cpu")}
    for precision, on in expected.items():
        with RenderModel(info, precision=precision).autocast("cpu"):
            assert torch.is_autocast_enabled("cpu") == on, precision
    cpuinfo = Path("/proc/cpuinfo")  # the flags the answer rests on, where Linux lists them
    if cpuinfo.is_file():
        flags = cpuinfo.read_text()
        assert native_bf16("cpu") == (" avx512_bf16" in flags or " amx_bf16" in flags or " amx_tile" in flags)


def test_reflect_feeds_the_direction_mirrored_about_the_learned_normal():
    """With the normal head fixed to +z, the colour head's mirrored-direction inputs are the
    harmonics of (dx, dy, -dz): a head that reads the three first-order ones of that part returns
    sigmoid(-c y, c z, -c x) of the mirrored direction."""
    from nerf.fields.grids import DenseGrid

    box = torch.tensor([[-1.0] * 3, [1.0] * 3])
    field = FastField(DenseGrid(box, 4, 4), geo_features=5, sh_degree=2, reflect=True)
    with torch.no_grad():
        field.normal_head.weight.zero_()
        field.normal_head.bias.copy_(torch.tensor([0.0, 0.0, 2.0]))  # any length: it is normalised
    head = torch.nn.Linear(5 + 4 + 4, 3, bias=False)
    with torch.no_grad():
        head.weight.zero_()
        for out, col in enumerate((10, 11, 12)):  # features 0-4, harmonics of d 5-8, mirrored 9-12
            head.weight[out, col] = 1.0
    field.colour_mlp = head
    g = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g), dim=-1)
    rgb = field.colour(torch.randn(64, 5, generator=g), d)
    m = d * torch.tensor([1.0, 1.0, -1.0])
    c1 = 0.4886025119029199
    want = torch.sigmoid(torch.stack([-c1 * m[:, 1], c1 * m[:, 2], -c1 * m[:, 0]], -1))
    assert torch.allclose(rgb, want, atol=1e-6)
    assert any(p is field.normal_head.weight for p in field.mlp_parameters())


def test_forced_bf16_without_native_support_is_named(tmp_path):
    """train.precision=bf16 on a machine that would emulate it gets a one-line warning naming the
    option and the remedy; where bf16 is native, or under auto, nothing is said."""
    from nerf.config import load_config
    from nerf.models.base import native_bf16
    from nerf.training.trainer import Trainer

    tiny = ["data.synthetic.resolution=16", "data.synthetic.n_train=4", "data.synthetic.n_test=1", "model.width=32",
            "model.depth=2", "model.view_width=16", "model.skip_layer=0", "train.eval_every=0"]
    for precision in ("bf16", "auto"):
        lines = []
        cfg = load_config("builtin_nerf", tiny + [f"train.precision={precision}"])
        Trainer(cfg, tmp_path / precision, torch.device("cpu"), show_progress=False, log=lines.append)
        warned = [line for line in lines if "train.precision=bf16" in line]
        expect = precision == "bf16" and not native_bf16("cpu")
        assert len(warned) == int(expect), (precision, lines)
        if expect:
            assert "emulated" in warned[0] and "train.precision=auto" in warned[0]
