"""Coarse-to-fine grids (model.fast.grid_res_start): resampling keeps the field, the schedule
reaches grid_res, the optimiser restarts on the new shapes, and a resumed run is exact."""
import re

import pytest
import torch

from nerf.config import ConfigError, load_config
from nerf.datasets import load_scene
from nerf.fields.grids import DenseGrid, TensoRFVM
from nerf.models.base import SceneInfo
from nerf.runs.run_folder import build_run_model
from nerf.training.trainer import Trainer

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def _vertices(res: int) -> torch.Tensor:
    """World points of every vertex of a res^3 lattice over BOX."""
    a = torch.linspace(-1.0, 1.0, res)
    return torch.stack(torch.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


@pytest.mark.parametrize("enc", [TensoRFVM(BOX, res=9, n_comp=3), DenseGrid(BOX, res=9, n_features=4)])
def test_resize_keeps_the_values_at_the_coarse_vertices(enc):
    # 9 -> 17 vertices per axis: every coarse vertex is a fine vertex (2i), where a vertex-aligned
    # resample must keep the value exactly, for any (random) field
    torch.manual_seed(0)
    pts = _vertices(9)
    before = enc(pts)
    enc.resize(17)
    assert enc.res == 17
    assert torch.allclose(enc(pts), before, atol=1e-6)


def test_resize_keeps_a_bilinear_factor_field_everywhere():
    # planes bilinear and lines linear in their coordinates: the factorised field is the same
    # function on any lattice, so it must agree at random points after a 7 -> 20 resample
    torch.manual_seed(1)
    enc = TensoRFVM(BOX, res=7, n_comp=2)
    u = torch.linspace(0, 1, 7)
    c = torch.randn(4, 3, 1, 1, 2)
    ui, uj = u[None, :, None, None], u[None, None, :, None]
    planes = c[0] + c[1] * ui + c[2] * uj + c[3] * ui * uj
    k = torch.randn(2, 3, 1, 2)
    lines = k[0] + k[1] * u[None, :, None]
    with torch.no_grad():
        enc.planes.copy_(planes), enc.lines.copy_(lines)
    x = torch.rand(500, 3) * 2 - 1
    before = enc(x)
    enc.resize(20)
    assert enc.planes.shape == (3, 20, 20, 2) and enc.lines.shape == (3, 20, 2)
    assert torch.allclose(enc(x), before, atol=1e-5)


def test_resized_state_dict_loads_into_a_coarse_model_and_a_mismatch_still_fails():
    a, b = TensoRFVM(BOX, res=8, n_comp=3), TensoRFVM(BOX, res=8, n_comp=3)
    a.resize(13)
    b.load_state_dict(a.state_dict())
    assert b.res == 13 and torch.equal(b.planes, a.planes) and torch.equal(b.lines, a.lines)
    with pytest.raises(RuntimeError):
        TensoRFVM(BOX, res=8, n_comp=4).load_state_dict(a.state_dict())
    d, e = DenseGrid(BOX, res=5, n_features=2), DenseGrid(BOX, res=5, n_features=2)
    d.resize(9)
    e.load_state_dict(d.state_dict())
    assert e.res == 9 and torch.equal(e.grid, d.grid)


def test_schedule_grows_by_equal_ratios_to_grid_res():
    cfg = load_config("builtin", ["data.synthetic.resolution=16", "data.synthetic.n_train=2",
                                  "model.fast.grid_res=256", "model.fast.grid_res_start=64",
                                  "model.fast.grid_upsample_count=2", "model.fast.grid_upsample_until=1000"])
    scene = load_scene(cfg.data, "train")
    model = build_run_model(cfg, SceneInfo.from_scene(scene, has_alpha=scene.alpha is not None))
    assert model.grid_schedule() == {500: 128, 1000: 256}
    assert model.field.encoding.res == 64
    # the built-in config trains coarse to fine: 32 up to its 128 in four equal ratios by step 250
    assert build_run_model(load_config("builtin", []), model.info).grid_schedule() == {
        62: 45, 125: 64, 188: 91, 250: 128}
    assert build_run_model(load_config("builtin", ["model.fast.grid_res_start=0"]), model.info).grid_schedule() == {}
    # a start at or above the final resolution (the config's 32 with a lowered grid_res), or the hash
    # grid: no schedule, the grid built at its final resolution
    small = build_run_model(load_config("builtin", ["model.fast.grid_res=16"]), model.info)
    assert small.grid_schedule() == {} and small.field.encoding.res == 16
    assert build_run_model(load_config("builtin", ["model.fast.encoding=hash"]), model.info).grid_schedule() == {}


@pytest.mark.parametrize("bad, message", [
    (["model.fast.grid_res_start=1"], "grid_res_start: must be 0 (off) or >= 2, got 1"),
    (["model.fast.grid_res_start=32", "model.fast.grid_upsample_count=0"], "grid_upsample_count: must be >= 1"),
])
def test_bad_schedules_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("builtin", bad)


OVER = ["data.synthetic.resolution=16", "data.synthetic.n_train=4", "train.batch_rays=128", "train.eval_every=0",
        "model.fast.occ_update_every=4", "model.fast.occ_warmup=6", "train.checkpoint_every=5",
        "model.fast.grid_res=24", "model.fast.grid_res_start=6", "model.fast.grid_upsample_count=2",
        "model.fast.grid_upsample_until=8"]


def _trainer(tmp_path, name, steps, resume=False):
    # on the CPU whatever NERF_TEST_DEVICE says: the resumed run must be bit-exact, and CUDA's float
    # atomics sum in any order
    return Trainer(load_config("builtin", OVER + [f"train.max_steps={steps}"]), tmp_path / name, torch.device("cpu"),
                   resume=resume, log=lambda *x: None, show_progress=False)


def test_training_upsamples_restarts_adam_and_resumes_exactly(tmp_path):
    # schedule {4: 12, 8: 24}; the run is interrupted at step 5, between the two upsamplings
    a = _trainer(tmp_path, "a", 11)
    assert a.model.grid_schedule() == {4: 12, 8: 24} and a.model.field.encoding.res == 6
    a.train()
    enc = a.model.field.encoding
    assert enc.res == 24 and enc.planes.shape == (3, 24, 24, 16)
    for p in a.model.parameters():  # Adam's moments follow the new shapes
        assert a.optimizer.state[p]["exp_avg"].shape == p.shape
    # the moments restarted when the grid reached 24 (before step 8): 3 updates since, against 11 for the MLPs
    assert int(a.optimizer.state[enc.planes]["step"]) == 3
    assert int(a.optimizer.state[a.model.field.density_mlp[0].weight]["step"]) == 11
    b = _trainer(tmp_path, "b", 5)
    b.train()
    assert b.model.field.encoding.res == 12
    b2 = _trainer(tmp_path, "b", 11, resume=True)
    assert b2.step == 5 and b2.model.field.encoding.res == 12
    b2.train()
    sa, sb = a.model.state_dict(), b2.model.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_a_run_on_its_clock_upsamples_by_its_budget_share(tmp_path):
    """With train.lr_decay_over=minutes, upsampling i of n also happens once i/n of
    grid_upsample_budget of the time budget is spent, whichever comes first; a run scheduled in
    steps, or grid_upsample_budget=0 (the default; blender.yaml sets 0.5), follows the steps alone."""
    from nerf.training.schedules import budget_share

    assert load_config("builtin", []).model.fast.grid_upsample_budget == 0.0
    assert load_config("blender", []).model.fast.grid_upsample_budget == 0.5
    clock = ["train.lr_decay_over=minutes", "train.max_minutes=2", "model.fast.grid_upsample_budget=0.5"]
    a = _trainer_with(tmp_path, "clock", OVER + clock + ["train.max_steps=100"])
    t = a.cfg.train
    assert budget_share(t, 60.0) == 0.5 and budget_share(a.cfg.train.__class__(), 60.0) == 0.0
    model = a.model  # schedule {4: 12, 8: 24}, grid_upsample_budget 0.5: shares 0.25 and 0.5
    assert [model.grid_res_at(1, b) for b in (0.0, 0.24, 0.25, 0.49, 0.5, 1.0)] == [None, None, 12, 12, 24, 24]
    assert [model.grid_res_at(s, 0.0) for s in (3, 4, 7, 8, 50)] == [None, 12, 12, 24, 24]
    assert model.field.encoding.res == 6
    a.train_seconds = 0.3 * 120  # a slow machine: 30 % of the budget gone before step 4
    a.train_step()
    assert a.step == 1 and model.field.encoding.res == 12
    for p in model.field.encoding.parameters():  # the optimiser restarted on the new shapes
        assert a.optimizer.state[p]["exp_avg"].shape == p.shape
    a.train_seconds = 0.6 * 120
    a.train_step()
    assert model.field.encoding.res == 24

    steps_only = _trainer_with(tmp_path, "steps", OVER + clock + ["train.max_steps=100", "model.fast.grid_upsample_budget=0"])
    steps_only.train_seconds = 0.9 * 120
    steps_only.train_step()
    assert steps_only.model.field.encoding.res == 6
    in_steps = _trainer_with(tmp_path, "in_steps", OVER + ["train.max_steps=100", "train.max_minutes=2",
                                                           "model.fast.grid_upsample_budget=0.5"])
    in_steps.train_seconds = 0.9 * 120
    in_steps.train_step()
    assert in_steps.model.field.encoding.res == 6


def _trainer_with(tmp_path, name, overrides):
    return Trainer(load_config("builtin", overrides), tmp_path / name, torch.device("cpu"), log=lambda *x: None,
                   show_progress=False)
