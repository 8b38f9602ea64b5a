"""Learned initialisations: Reptile, the scene family, init files and train-scene --init."""
from __future__ import annotations

import copy

import pytest
import torch
from conftest import DEVICE, run_cli
from torch import nn

from nerf.config import load_config
from nerf.datasets.options import DataOptions, SyntheticOptions
from nerf.datasets.synthetic import BOXES, SPHERES, load_synthetic, scene_content
from nerf.errors import UserError
from nerf.inr.reptile import MetaConfig, meta_train, reptile_step, reptile_update
from nerf.runs.init_files import load_init, save_init
from nerf.runs.run_folder import build_run_model as build_model
from nerf.scene_rays import SceneInfo

TINY = ["model.method=nerf", "data.synthetic.resolution=16", "data.synthetic.n_train=3", "data.synthetic.n_test=2",
        "data.synthetic.n_val=1", "data.synthetic.supersample=1", "model.depth=2", "model.width=16",
        "model.view_width=8", "model.n_coarse=8", "model.n_fine=0", "train.batch_rays=32", "train.max_steps=2",
        "train.eval_every=0", "train.checkpoint_every=2", "train.threads=1", "model.pos_freqs=4", "model.dir_freqs=2"]
INFO = SceneInfo(2.4, 5.6, [[-1.1] * 3, [1.1] * 3], [1.0, 1.0, 1.0])


def toy_adapt(steps=5, lr=0.1):
    """Fit a linear toy model to a fixed target with plain SGD (deterministic)."""
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    y = torch.tensor([[1.0, -2.0], [0.5, 0.0], [2.0, 1.0], [-1.0, 3.0]])

    def adapt(model):
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        for _ in range(steps):
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return loss.item()
    return adapt


@pytest.mark.parametrize("fraction", [0.25, 1.0])
def test_one_reptile_step_moves_the_init_by_the_configured_fraction(fraction):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    model.register_buffer("fixed", torch.arange(3.0))
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    adapted = copy.deepcopy(model)
    toy_adapt()(adapted)  # the task-adapted weights phi, computed independently
    phi = {n: p.detach().clone() for n, p in adapted.named_parameters()}
    assert all((phi[n] - theta[n]).abs().max() > 1e-2 for n in theta)  # adaptation really moved them
    reptile_step(model, toy_adapt(), fraction)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), theta[n] + fraction * (phi[n] - theta[n]), rtol=0, atol=1e-6)
        # the distance to phi shrinks by exactly (1 - fraction)
        assert (p.detach() - phi[n]).norm().item() == pytest.approx((1 - fraction) * (theta[n] - phi[n]).norm().item(),
                                                                    abs=1e-6)
    assert torch.equal(model.fixed, torch.arange(3.0))  # buffers do not move


def test_reptile_update_formula():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
        model.bias.fill_(-1.0)
    reptile_update(model, {"weight": torch.full((1, 2), 3.0), "bias": torch.tensor([1.0])}, 0.1)
    torch.testing.assert_close(model.weight.detach(), torch.full((1, 2), 1.2))
    torch.testing.assert_close(model.bias.detach(), torch.tensor([-0.8]))


def test_family_varies_content_per_seed_and_keeps_seed_0():
    assert scene_content(0, True) == (SPHERES, BOXES)
    assert scene_content(5, False) == (SPHERES, BOXES)
    a, b = scene_content(1, True), scene_content(2, True)
    assert a != b and a == scene_content(1, True)
    assert a[1][1] == BOXES[1]  # the slab is shared by the family
    opts = lambda seed, rc: DataOptions(max_images=1, synthetic=SyntheticOptions(  # noqa: E731
        seed=seed, resolution=16, supersample=1, random_content=rc))
    ref = load_synthetic("train", opts(0, False)).images
    torch.testing.assert_close(load_synthetic("train", opts(0, True)).images, ref, rtol=0, atol=0)
    # same cameras (same seed), different shapes: the images differ
    fixed, varied = load_synthetic("train", opts(3, False)).images, load_synthetic("train", opts(3, True)).images
    assert (fixed - varied).abs().mean() > 0.02


def test_init_file_round_trip_and_mismatch(tmp_path):
    cfg = load_config(None, TINY)
    torch.manual_seed(1)
    model = build_model(cfg, INFO)
    save_init(tmp_path / "init.pt", model, cfg, {"note": "test"})
    torch.manual_seed(2)
    other = build_model(cfg, INFO)
    assert load_init(tmp_path / "init.pt", other, cfg) == {"note": "test"}
    for k, v in model.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    wide = load_config(None, TINY + ["model.width=32"])
    with pytest.raises(UserError, match=r"init\.pt: made for model\.nerf\.width=16, but the config has model\.nerf\.width=32"):
        load_init(tmp_path / "init.pt", build_model(wide, INFO), wide)
    fine = load_config(None, TINY + ["model.n_fine=8"])  # same field, but a fine network the init lacks
    with pytest.raises(UserError, match="does not fit the model config"):
        load_init(tmp_path / "init.pt", build_model(fine, INFO), fine)
    with pytest.raises(UserError, match="missing.pt: init file not found"):
        load_init(tmp_path / "missing.pt", model, cfg)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(UserError, match="junk.pt"):
        load_init(tmp_path / "junk.pt", model, cfg)


def test_meta_train_then_trainer_starts_from_the_init(tmp_path):
    from nerf.training.trainer import Trainer

    cfg = load_config(None, TINY + ["data.synthetic.random_content=true"])
    ms = MetaConfig(meta_steps=3, inner_steps=2, n_tasks=2, outer_lr=0.5, log_every=1)
    model, summary = meta_train(cfg, ms, log=lambda *a: None)
    history = summary["runs"][-1]["history"]
    assert summary["meta_steps_done"] == 3 and len(history) == 3 and "history" not in summary
    assert history[0]["epsilon"] == 0.5
    save_init(tmp_path / "init.pt", model, cfg, summary)
    trainer = Trainer(cfg, tmp_path / "run", DEVICE, log=lambda *a: None, show_progress=False,
                      init_file=tmp_path / "init.pt")
    for k, v in model.state_dict().items():
        assert torch.equal(trainer.model.state_dict()[k].cpu(), v.cpu())


def test_cli_meta_train_and_train_scene_init(tmp_path):
    init = tmp_path / "init.pt"
    r = run_cli("meta-train", *TINY, "--out", str(init), "--meta-steps", "2", "--inner-steps", "2", "--tasks", "2",
                "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    assert init.is_file() and init.with_suffix(".json").is_file()
    run = tmp_path / "run"
    r = run_cli("train-scene", *TINY, "data.synthetic.seed=7", "--init", str(init), "--out", str(run),
                "--no-eval", "--no-showcase", "--config", "meta_builtin", timeout=300)
    assert r.returncode == 0, r.stderr
    assert "initialised from" in r.stdout and (run / "checkpoints" / "step_0000002.pt").is_file()
    # missing or mismatched init: one line naming the file, exit 2, no run folder
    r = run_cli("train-scene", *TINY, "--init", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "r2"), "--quiet")
    assert r.returncode == 2 and "nope.pt: init file not found" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and not (tmp_path / "r2").exists()
    r = run_cli("train-scene", *TINY, "model.width=24", "--init", str(init), "--out", str(tmp_path / "r3"), "--quiet")
    assert r.returncode == 2 and "model.nerf.width" in r.stderr and not (tmp_path / "r3").exists()
    r = run_cli("meta-train", "--out", str(init), "--outer-lr", "1.5")
    assert r.returncode == 2 and "meta.outer_lr: must be in (0, 1]" in r.stderr
