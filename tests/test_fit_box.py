"""The grid encoding's box fitted to where content can be (`model.fast.fit_box`): it holds every
cell the silhouettes allow and every training ray in NDC, it is saved with the weights, and a
state dict from before the box was saved keeps the scene box."""
import numpy as np
import pytest
import torch

from nerf.config import load_config
from nerf.datasets import load_scene
from nerf.models.base import SceneInfo
from nerf.runs.run_folder import build_run_model
from nerf.scene_rays import ndc_frusta_box, pixel_rays
from tests.test_llff import forward_facing, write_llff

BOX_KEYS = ("field.encoding.box_lo", "field.encoding.box_size")


def _model(overrides=()):
    cfg = load_config("builtin", ["data.synthetic.resolution=32", "data.synthetic.n_test=1", *overrides])
    scene = load_scene(cfg.data, "train")
    return build_run_model(cfg, SceneInfo.from_scene(scene, scene.alpha is not None)), scene


def _box(model):
    enc = model.field.encoding
    return torch.stack([enc.box_lo, enc.box_lo + enc.box_size])


@pytest.fixture(scope="module")
def fitted():
    model, scene = _model(["model.fast.fit_box=true"])
    model.prepare(scene)
    return model


def test_fitted_box_holds_every_cell_the_hull_allows(fitted):
    grid, box = fitted.grid, _box(fitted)
    cells = grid.allowed.nonzero(as_tuple=True)[0]
    assert 0 < cells.numel() < grid.res ** 3  # the built-in scene's hull carves part of the box
    for corner in range(8):
        offsets = torch.tensor([(corner >> k) & 1 for k in range(3)], dtype=torch.float32).expand(cells.numel(), 3)
        pts = grid.cell_points(cells, offsets)
        assert bool(((pts >= box[0] - 1e-5) & (pts <= box[1] + 1e-5)).all())
    # tighter than the scene box (the point of fitting), and within it
    assert bool((box[0] >= grid.bbox[0]).all() and (box[1] <= grid.bbox[1]).all())
    volume = lambda b: float((b[1] - b[0]).prod())  # noqa: E731
    assert volume(box) < 0.8 * volume(grid.bbox)


def test_without_fit_box_the_grid_spans_the_scene_box():
    model, scene = _model(["model.fast.fit_box=false"])
    model.prepare(scene)
    assert torch.equal(_box(model), model.grid.bbox)


def test_box_is_saved_and_old_state_dicts_keep_the_scene_box(fitted):
    state = fitted.state_dict()
    assert all(k in state for k in BOX_KEYS)
    restored, _ = _model()
    restored.load_state_dict(state)
    assert torch.equal(_box(restored), _box(fitted))
    x = torch.rand(256, 3) * 1.6 - 0.8
    torch.testing.assert_close(restored.density(x), fitted.density(x), rtol=0, atol=0)
    old = {k: v for k, v in state.items() if k not in BOX_KEYS}  # written before the box was saved
    legacy, _ = _model()
    legacy.load_state_dict(old)
    assert torch.equal(_box(legacy), legacy.grid.bbox)


def test_ndc_box_holds_every_training_ray_and_no_more(tmp_path):
    write_llff(tmp_path / "ff", forward_facing(), np.array([4.0, 9.0]))
    cfg = load_config("llff_fast", [f"data.path={tmp_path / 'ff'}", "data.downscale=4"])
    scene = load_scene(cfg.data, "train")
    info = SceneInfo.from_scene(scene, False)
    box = ndc_frusta_box(scene.cameras, info, margin=0.02)
    cams, h, w = scene.cameras, scene.cameras.height, scene.cameras.width
    n = cams.c2w.shape[0]
    gen = torch.Generator().manual_seed(0)
    # every pixel centre of every camera, at NDC depths 0 and 1 and at a random one between
    y, x = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    cam = torch.arange(n).repeat_interleave(h * w)
    rays = pixel_rays(cams, cam, x.reshape(-1).repeat(n), y.reshape(-1).repeat(n), info)
    o, d = rays.origins, rays.directions
    ends = torch.cat([o, o + d])
    between = o + d * torch.rand(len(rays), 1, generator=gen)
    for pts in (ends, between):
        assert bool(((pts >= box[0]) & (pts <= box[1])).all())
    # ... and no larger than the margin around them (straight lines: the ends are the extremes)
    size = box[1] - box[0]
    assert bool((ends.amin(0) - box[0] <= 0.021 * size).all() and (box[1] - ends.amax(0) <= 0.021 * size).all())


def test_fit_box_is_on_for_blender_and_off_by_default():
    # on where it was measured to help (lego 400x400), off where it hurt (the built-in 500-step run)
    assert load_config("blender_fast", []).model.fast.fit_box is True
    assert load_config("builtin", []).model.fast.fit_box is False
