"""model.fast.step_pixels and grid_pixels: the marching step and the tensorf planes follow the
images' resolution."""
import dataclasses
import math

import pytest

from nerf.config import load_config
from nerf.datasets import load_scene
from nerf.models.fast import MAX_GRID_RES, MAX_STEPS, FastConfig, FastNeRF, box_steps
from nerf.scene_rays import SceneInfo

BOX = [[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]]


def test_pixel_size_is_the_distance_over_the_focal_length():
    cfg = load_config("builtin", ["data.synthetic.resolution=40", "data.synthetic.n_train=5"])
    scene = load_scene(cfg.data, "train")
    info = SceneInfo.from_scene(scene, has_alpha=True)
    # the built-in cameras sit on a sphere of radius 4 around the box's centre
    assert info.pixel_size == pytest.approx(4.0 / float(scene.cameras.fx[0]), rel=1e-5)
    half = load_scene(dataclasses.replace(cfg.data, synthetic=dataclasses.replace(cfg.data.synthetic, resolution=80)),
                      "train")
    assert SceneInfo.from_scene(half, has_alpha=True).pixel_size == pytest.approx(info.pixel_size / 2, rel=1e-5)


def test_steps_grow_with_the_resolution_and_stop_at_the_cap():
    diag = 3 * math.sqrt(3)
    fc = FastConfig(steps=256, step_pixels=1.5)
    coarse = SceneInfo(2.0, 6.0, BOX, [1, 1, 1], pixel_size=4.0 / 277.8)  # lego at 200x200
    fine = dataclasses.replace(coarse, pixel_size=4.0 / 1111.1)  # lego at 800x800
    assert box_steps(fc, coarse) == 256  # already finer than 1.5 pixels: the configured steps
    assert box_steps(fc, fine) == math.ceil(diag / (1.5 * 4.0 / 1111.1))
    assert diag / box_steps(fc, fine) <= 1.5 * 4.0 / 1111.1
    assert box_steps(fc, dataclasses.replace(coarse, pixel_size=1e-5)) == MAX_STEPS
    # off, in NDC, and in runs saved before pixel_size was recorded: the configured steps
    assert box_steps(FastConfig(steps=256), fine) == 256
    assert box_steps(fc, dataclasses.replace(fine, ndc=True)) == 256
    assert box_steps(fc, dataclasses.replace(fine, pixel_size=None)) == 256
    model = FastNeRF(fc, fine)
    assert model.grid.step == pytest.approx(diag / box_steps(fc, fine), rel=1e-6)


def test_step_pixels_is_checked_and_pixel_size_saved_with_the_run():
    assert FastConfig(step_pixels=-1).validate() == ["model.fast.step_pixels: must be >= 0, got -1"]
    assert FastConfig(grid_pixels=-2).validate() == ["model.fast.grid_pixels: must be >= 0, got -2"]
    saved = dataclasses.asdict(SceneInfo(2.0, 6.0, BOX, None, pixel_size=0.01))
    assert SceneInfo(**saved).pixel_size == 0.01
    del saved["pixel_size"]  # a run saved before it was recorded
    assert SceneInfo(**saved).pixel_size is None


def test_tensorf_planes_grow_with_the_resolution_in_a_box_only():
    fc = FastConfig(encoding="tensorf", grid_res=160, grid_pixels=3.2, grid_res_start=64, grid_upsample_count=3)
    lego = SceneInfo(2.0, 6.0, BOX, [1, 1, 1], pixel_size=4.0 / 1111.1)  # lego at 800x800
    # the box's 3 units over 3.2 pixel widths: 260 cells, rounded to a multiple of 16
    model = FastNeRF(fc, lego)
    assert model.fc.grid_res == 256
    assert max(model.grid_schedule().values()) == 256 and model.field.encoding.res == 64  # coarse-to-fine as before
    assert FastNeRF(fc, dataclasses.replace(lego, pixel_size=4.0 / 555.6)).fc.grid_res == 160  # 400x400: as set
    assert FastNeRF(fc, dataclasses.replace(lego, pixel_size=1e-5)).fc.grid_res == MAX_GRID_RES
    # off, in NDC, for runs saved before pixel_size, and for the other encodings: as set
    assert FastNeRF(dataclasses.replace(fc, grid_pixels=0.0), lego).fc.grid_res == 160
    assert FastNeRF(fc, dataclasses.replace(lego, ndc=True)).fc.grid_res == 160
    assert FastNeRF(fc, dataclasses.replace(lego, pixel_size=None)).fc.grid_res == 160
    assert FastNeRF(dataclasses.replace(fc, encoding="dense", grid_res=32, grid_res_start=0), lego).fc.grid_res == 32


def test_blender_config_gives_lego_at_800_its_finer_planes():
    cfg = load_config("blender", [])
    lego = SceneInfo(2.0, 6.0, BOX, [1, 1, 1], pixel_size=0.003628)  # lego's own at 800x800 (saved with its runs)
    model = FastNeRF(cfg.model.fast, lego)
    assert model.fc.grid_res == 256 and box_steps(cfg.model.fast, lego) == 512
    model = FastNeRF(cfg.model.fast, dataclasses.replace(lego, pixel_size=4 * 0.003628))  # 200x200
    assert model.fc.grid_res == cfg.model.fast.grid_res and box_steps(cfg.model.fast, model.info) == cfg.model.fast.steps
