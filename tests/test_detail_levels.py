"""Hash levels beside a grid (model.fast.detail_levels): the features are the grid's and the hash
levels' side by side, both learn, coarse-to-fine resizes only the grid, and a resumed run is exact."""
import re

import pytest
import torch

from nerf.config import ConfigError, load_config
from nerf.fields.grids import DenseGrid, HashGrid, TensoRFVM, WithDetail, build_encoding
from nerf.models.fast import FastConfig
from nerf.training.trainer import Trainer

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


@pytest.mark.parametrize("encoding, base_cls", [("dense", DenseGrid), ("tensorf", TensoRFVM)])
def test_detail_levels_sit_beside_the_grid(encoding, base_cls):
    fc = FastConfig(encoding=encoding, grid_res=8, dense_features=4, tensorf_comp=3, detail_levels=3,
                    hash_features=2, hash_log2_size=12, hash_max_res=64)
    torch.manual_seed(0)
    enc = build_encoding(fc, BOX)
    assert isinstance(enc, WithDetail) and isinstance(enc.base, base_cls) and isinstance(enc.detail, HashGrid)
    # three levels from twice the grid's resolution up to hash_max_res (HashGrid floors each level's)
    res = enc.detail.resolutions
    assert len(res) == 3 and res[0] == 16 and 31 <= res[1] <= 32 and 63 <= res[2] <= 64
    assert enc.out_dim == enc.base.out_dim + 6
    x = torch.rand(50, 3) * 2 - 1
    out = enc(x)
    assert out.shape == (50, enc.out_dim)
    assert torch.equal(out, torch.cat([enc.base(x), enc.detail(x)], -1))
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())
    # coarse-to-fine resizes the grid and leaves the hash levels as they are
    table = enc.detail.table.detach().clone()
    enc.resize(12)
    assert enc.res == 12 and enc.base.res == 12 and torch.equal(enc.detail.table, table)
    # fit_box moves both onto the new box
    enc.fit_box([[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]])
    for part in (enc.base, enc.detail):
        assert torch.equal(part.box_lo, torch.full((3,), -0.5)) and torch.equal(part.box_size, torch.ones(3))


def test_without_detail_levels_the_grid_is_returned_alone():
    enc = build_encoding(FastConfig(encoding="dense", grid_res=8, dense_features=4), BOX)
    assert isinstance(enc, DenseGrid)


@pytest.mark.parametrize("bad, message", [
    (["model.fast.encoding=hash", "model.fast.detail_levels=2"], "model.fast.detail_levels: hash levels beside a"),
    (["model.fast.detail_levels=-1"], "model.fast.detail_levels: must be >= 0, got -1"),
])
def test_bad_detail_levels_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("builtin", bad)


OVER = ["data.synthetic.resolution=16", "data.synthetic.n_train=4", "train.batch_rays=128", "train.eval_every=0",
        "model.fast.occ_update_every=4", "model.fast.occ_warmup=6", "train.checkpoint_every=5",
        "model.fast.encoding=dense", "model.fast.dense_features=4", "model.fast.grid_res=24",
        "model.fast.grid_res_start=6", "model.fast.grid_upsample_count=2", "model.fast.grid_upsample_until=8",
        "model.fast.detail_levels=2", "model.fast.hash_log2_size=12", "model.fast.hash_max_res=96"]


def _trainer(tmp_path, name, steps, resume=False):
    # on the CPU: the resumed run must be bit-exact, and CUDA's float atomics sum in any order
    return Trainer(load_config("builtin", OVER + [f"train.max_steps={steps}"]), tmp_path / name, torch.device("cpu"),
                   resume=resume, log=lambda *x: None, show_progress=False)


def test_training_with_detail_levels_learns_and_resumes_exactly(tmp_path):
    a = _trainer(tmp_path, "a", 11)
    enc = a.model.field.encoding
    assert isinstance(enc, WithDetail) and enc.res == 6
    table = enc.detail.table.detach().clone()
    a.train()
    assert enc.res == 24 and enc.base.grid.shape == (24, 24, 24, 4)
    assert not torch.equal(enc.detail.table, table)  # the hash levels were trained
    # the grid's moments restarted at its last resize (before step 8); the hash table's did not
    assert int(a.optimizer.state[enc.base.grid]["step"]) == 3
    assert int(a.optimizer.state[enc.detail.table]["step"]) == 11
    b = _trainer(tmp_path, "b", 5)
    b.train()
    b2 = _trainer(tmp_path, "b", 11, resume=True)
    assert b2.step == 5 and b2.model.field.encoding.res == 12
    b2.train()
    sa, sb = a.model.state_dict(), b2.model.state_dict()
    assert any(".detail." in k for k in sa)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
