"""What real captures need from the fast method, on built-in scenes with exact ground truth:
scene contraction for an unbounded scene, per-image appearance codes for photos whose exposure
and white balance change, and camera refinement for poses that are slightly wrong. Each trains
two short runs that differ in the one option, for the same number of steps, and compares
held-out PSNR (test views are exact: no exposure change, true poses)."""
import dataclasses
import math

import pytest
import torch
from conftest import DEVICE

from nerf.config import load_config
from nerf.datasets import load_scene
from nerf.datasets import synthetic as syn
from nerf.inference.video import training_cameras
from nerf.inference.views import render_view, score_views
from nerf.metrics import psnr
from nerf.models.camera_refine import CameraRefinement
from nerf.render.occupancy import OccupancyGrid
from nerf.render.rotations import so3_exp
from nerf.runs.run_folder import read_scene_json
from nerf.training.trainer import Trainer

pytestmark = pytest.mark.slow

# small and quick: 48x48 views, 1024 rays per step, a modest grid
QUICK = ["data.synthetic.resolution=48", "data.synthetic.n_train=30", "data.synthetic.n_test=6", "train.batch_rays=1024",
         "train.max_minutes=0", "train.log_every=1000", "train.eval_every=100000", "train.checkpoint_every=100000",
         "model.fast.grid_res=96", "model.fast.occ_res=64", "model.fast.occ_warmup=64"]


def _train(tmp_path, name, overrides, steps):
    cfg = load_config("builtin", QUICK + [f"train.max_steps={steps}"] + overrides)
    tr = Trainer(cfg, tmp_path / name, torch.device(DEVICE), show_progress=False)
    while tr.budget_left():
        tr.train_step()
    return tr


def _held_out_psnr(tr) -> float:
    scene = load_scene(tr.cfg.data, "test")
    tr.model.eval()
    with torch.no_grad():
        vals = [psnr(render_view(tr.model, scene.cameras.to(DEVICE), i, tr.info, 8192)["rgb"].cpu(), scene.images[i])
                for i in range(len(scene.cameras))]
    return sum(vals) / len(vals)


def test_contracted_steps_cover_the_world_and_map_back():
    """Cone stepping: fixed steps up to the knee, then growing in proportion to distance; the
    intervals tile the ray without gaps; grid points map back to the world."""
    grid = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 32, 0.01, contraction="linf", centre=(0.1, 0.0, 0.0), radius=0.5,
                         knee=1.0)
    t = grid.to_t(torch.arange(0.005, 6.0, 0.01))
    t0, t1 = grid.intervals(t)
    assert torch.allclose(t1[:-1], t0[1:], atol=1e-5)  # contiguous
    width = t1 - t0
    assert torch.allclose(width[t1 < 1.0], torch.full_like(width[t1 < 1.0], 0.01), atol=1e-5)
    far = t0 > 2.0
    assert torch.allclose(width[far] / t[far], torch.full_like(t[far], 0.01), rtol=1e-2)  # cone angle step / knee
    x = torch.randn(100, 3) * 5
    assert torch.allclose(grid.from_grid(grid.to_grid(x)), x, rtol=1e-3, atol=1e-3)


def test_quadratic_steps_grow_with_the_square_of_distance_and_end_before_infinity():
    """step_growth quadratic: fixed steps up to the knee, then width step * (t / knee)^2 (uniform
    in disparity); the warped distance of infinity is twice the knee, so all of space beyond the
    knee costs knee / step steps; the occupancy's local step agrees with the intervals."""
    grid = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 32, 0.01, contraction="linf", radius=0.5, knee=1.0,
                         growth="quadratic")
    s = torch.arange(0.005, 1.995, 0.01)
    t = grid.to_t(s)
    assert torch.allclose(grid.to_s(t), s, atol=1e-4)
    t0, t1 = grid.intervals(t)
    assert torch.allclose(t1[:-1], t0[1:], rtol=1e-5, atol=1e-5)  # contiguous
    width = t1 - t0
    assert torch.allclose(width[t1 < 1.0], torch.full_like(width[t1 < 1.0], 0.01), atol=1e-5)
    mid = (t0 > 1.5) & (t1 < 20.0)
    assert torch.allclose(width[mid], 0.01 * t[mid] ** 2, rtol=2e-2)
    assert float(grid.to_s(torch.tensor(1e6))) == pytest.approx(2.0, abs=1e-5)
    o, d = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8]])
    near, far = torch.zeros(2, 1), torch.tensor([[100.0], [1e4]])
    _, counts = grid.ray_steps(o, d, near, far, torch.full((2,), 0.5))
    assert counts.tolist() == [199, 200]  # (2 - 1 / 100) knee / step, then 2 knee / step
    x = torch.tensor([[4.0, 0.0, 0.0]])
    assert float(grid.local_step(x)) == pytest.approx(0.01 * 16.0)
    with pytest.raises(ValueError, match="growth"):
        OccupancyGrid([[-2.0] * 3, [2.0] * 3], 8, 0.01, contraction="linf", knee=1.0, growth="cubic")


def test_the_fast_method_marches_with_the_configured_step_growth():
    """model.fast.step_growth reaches the occupancy grid of a contracted model; the far end costs
    fewer steps with quadratic growth than with linear."""
    from nerf.models.fast import FastConfig, FastNeRF
    from nerf.scene_rays import SceneInfo

    info = SceneInfo(near=0.05, far=100.0, bbox=[[-1.0] * 3, [1.0] * 3], background=None)
    counts = {}
    for growth in ("linear", "quadratic"):
        fc = FastConfig(grid_res=8, dense_res=8, occ_res=16, contraction="linf", step_growth=growth)
        grid = FastNeRF(fc, info).grid
        assert grid.power == {"linear": 1, "quadratic": 2}[growth]
        _, n = grid.ray_steps(torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 0.0]]), torch.full((1, 1), 0.05),
                              torch.full((1, 1), 1e3), torch.full((1,), 0.5))
        counts[growth] = int(n)
    assert counts["quadratic"] < 0.6 * counts["linear"], counts


def test_contraction_beats_the_box_on_an_unbounded_scene(tmp_path):
    """Sky far outside the unit ball: the boxed model can only paint it on the box's walls, so
    its held-out views are wrong where parallax moves the sky; the contracted one places it."""
    common = ["data.synthetic.unbounded=true", "model.fast.train_samples=65536"]
    boxed = _held_out_psnr(_train(tmp_path, "box", common + ["model.fast.contraction=none"], 250))
    contracted = _held_out_psnr(_train(tmp_path, "linf", common + ["model.fast.contraction=auto"], 250))
    assert contracted > boxed + 2.0, (contracted, boxed)


def test_appearance_codes_absorb_exposure_changes(tmp_path):
    """Training photos with random exposure and white balance: with per-image codes the held-out
    views (rendered with the mean code) are closer to the true, unchanged colours."""
    common = ["data.synthetic.exposure=0.3"]
    plain = _held_out_psnr(_train(tmp_path, "plain", common, 250))
    tr = _train(tmp_path, "coded", common + ["model.fast.appearance_dim=8"], 250)
    coded = _held_out_psnr(tr)
    assert coded > plain + 1.0, (coded, plain)
    # held-out photos 30% darker: a code fitted on each left half scores the right half better than the mean code
    scene = load_scene(tr.cfg.data, "test")
    darker = dataclasses.replace(scene, images=scene.images * 0.7)
    res = score_views(tr.model, darker, tr.info, 8192, fit_appearance=True)
    assert res["psnr_right_fitted_code"] > res["psnr_right_mean_code"] + 0.5, res  # measured: +1.2 dB


def test_so3_exp_is_rodrigues():
    axis = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -0.5]]), dim=-1)
    rot = so3_exp(axis * 0.3)
    v = torch.tensor([0.3, -1.0, 2.0])
    expect = (v * math.cos(0.3) + torch.linalg.cross(axis[0], v) * math.sin(0.3)
              + axis[0] * (axis[0] @ v) * (1 - math.cos(0.3)))
    assert torch.allclose(rot[0] @ v, expect, atol=1e-6)
    assert torch.allclose(so3_exp(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))
    w = torch.zeros(1, 3, requires_grad=True)
    so3_exp(w).sum().backward()
    assert torch.isfinite(w.grad).all()


def test_camera_refinement_ignores_a_correction_common_to_every_camera():
    """The same turn and shift added to every image's correction moves no ray and no refined
    camera: only the corrections' differences act, so the training cameras cannot drift away
    from the held-out ones as a whole."""
    ref = CameraRefinement(5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        ref.delta.copy_(0.01 * torch.randn(5, 6, generator=g))
    o, d = torch.randn(8, 3, generator=g), torch.nn.functional.normalize(torch.randn(8, 3, generator=g), dim=-1)
    idx = torch.tensor([0, 1, 2, 3, 4, 0, 2, 4])
    c2w = torch.eye(4).repeat(5, 1, 1)
    before = ref.apply(o, d, idx), ref.refined(c2w)
    with torch.no_grad():
        ref.delta += torch.tensor([0.05, -0.02, 0.03, 0.4, 0.1, -0.2])
    after = ref.apply(o, d, idx), ref.refined(c2w)
    assert torch.allclose(before[0][0], after[0][0], atol=1e-6) and torch.allclose(before[0][1], after[0][1], atol=1e-6)
    assert torch.allclose(before[1], after[1], atol=1e-6)
    assert not torch.allclose(before[0][1], d, atol=1e-4)  # the differences still turn the rays


def _pose_errors(c2w, true_c2w):
    """Median rotation error (degrees) and centre error of camera-to-world matrices."""
    rel = true_c2w[:, :3, :3].transpose(1, 2) @ c2w[:, :3, :3]
    cos = ((rel.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return float(torch.rad2deg(torch.acos(cos)).median()), float((c2w[:, :3, 3] - true_c2w[:, :3, 3]).norm(dim=-1).median())


def test_pose_refinement_reduces_pose_error_and_raises_psnr(tmp_path):
    """Training poses off by 2 degrees and 4 centimetres at 4 metres: refinement turns them
    towards the truth and the held-out views (true poses) improve. The centres barely move at
    this budget (a shift of 1% of the distance costs the images less than the rotation does):
    they must not get much worse. The refined poses are written beside the checkpoints and are
    the training cameras videos fly through."""
    common = ["data.synthetic.pose_noise=2.0"]
    steps = 400
    fixed = _train(tmp_path, "fixed", common, steps)
    refined = _train(tmp_path, "refined", common + ["model.fast.pose_refine=true"], steps)
    true = load_scene(load_config("builtin", QUICK).data, "train").cameras.c2w
    given = fixed.scene.cameras.c2w
    assert isinstance(refined.model.cameras, CameraRefinement)
    rot_before, shift_before = _pose_errors(given, true)
    rot_after, shift_after = _pose_errors(refined.model.refined_cameras(given.to(DEVICE)).cpu(), true)
    assert rot_before == pytest.approx(2.0, abs=1e-3)
    assert rot_after < 0.6 * rot_before and shift_after < 1.25 * shift_before, (rot_after, shift_after, shift_before)
    assert _held_out_psnr(refined) > _held_out_psnr(fixed) + 2.0
    assert syn.POSE_SHIFT * 2.0 == pytest.approx(shift_before, rel=1e-4)
    refined.save()
    cams = training_cameras(read_scene_json(refined.run_dir), refined.run_dir)
    assert torch.allclose(cams.c2w, refined.model.refined_cameras(given.to(DEVICE)).cpu(), atol=1e-6)
    fixed.save()
    assert not (fixed.run_dir / "refined_cameras.json").exists()


def test_near_camera_gradient_scaling_is_exact_and_leaves_the_forward_pass():
    """Gradients scale by (t / d)^2 up to 1; the values pass unchanged."""
    from nerf.render.gradient_scaling import near_camera_scale, scale_gradient

    t = torch.tensor([0.1, 0.5, 1.0, 3.0])
    x = torch.ones(4, 3, requires_grad=True)
    y = scale_gradient(x, near_camera_scale(t, 1.0))
    assert torch.equal(y, x)
    y.sum().backward()
    assert torch.allclose(x.grad[:, 0], torch.tensor([0.01, 0.25, 1.0, 1.0]))


def test_near_camera_gradient_scaling_reaches_the_field(tmp_path):
    """With near_grad_distance on, a training forward pass is unchanged and every gradient that
    reaches the field's parameters shrinks by (t / d)^2: with d = 1000 and no sample farther than
    the rays' far limit, by at least (far / 1000)^2."""
    from nerf.models.base import TRAIN
    from nerf.scene_rays import pixel_rays

    grads, outs = {}, {}
    for d in (0.0, 1000.0):
        cfg = load_config("builtin", QUICK + ["data.synthetic.unbounded=true", f"model.fast.near_grad_distance={d}",
                                              "model.fast.occ_warmup=0"])
        tr = Trainer(cfg, tmp_path / f"d{d:g}", torch.device(DEVICE), show_progress=False)
        cams = tr.scene.cameras.to(DEVICE)
        gen = torch.Generator().manual_seed(0)
        idx = torch.randint(0, len(cams), (512,), generator=gen)
        x, y = torch.rand(512, generator=gen) * cams.width, torch.rand(512, generator=gen) * cams.height
        rays = pixel_rays(cams, idx.to(DEVICE), x.to(DEVICE), y.to(DEVICE), tr.info)
        tr.model.train()
        out = tr.model(rays, mode=TRAIN, generator=torch.Generator(device=DEVICE).manual_seed(1), jitter=False)
        out["rgb"].square().sum().backward()
        outs[d] = out["rgb"].detach()
        grads[d] = torch.cat([p.grad.reshape(-1) for p in tr.model.field.parameters() if p.grad is not None]).norm()
    assert torch.allclose(outs[0.0], outs[1000.0])
    assert 0 < grads[1000.0] < 1e-6 * grads[0.0] * (tr.model.far_limit ** 2), (grads[1000.0], grads[0.0])


def test_unseen_cells_start_empty():
    """Cells no training camera sees are carved before training; the cells around what the
    cameras look at stay. Cameras on a ring look inwards at the origin, so the space far
    below and above the ring, outside every frustum, is carved."""
    from nerf.render.carving import camera_coverage

    cams = load_scene(load_config("builtin", ["data.synthetic.resolution=32"]).data, "train").cameras
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.2, -0.1]])
    assert (camera_coverage(pts, torch.zeros(2), cams) == len(cams)).all()
    # a point behind every camera (far outside the ring, opposite side of each camera's view) is seen by none
    centres = cams.c2w[:, :3, 3]
    far_out = centres[0] * 5.0
    count = camera_coverage(far_out[None], torch.zeros(1), cams)
    assert int(count) < len(cams)
    assert int(camera_coverage(far_out[None], torch.full((1,), 100.0), cams)) == len(cams)  # a huge sphere: seen


@pytest.mark.parametrize("contraction", ["none", "linf"])
def test_unseen_cells_of_a_whole_grid(contraction):
    """Every cell of a grid against a brute-force reference: one camera, a narrow frustum; a cell
    is seen when any of 5^3 points spread through it projects into the image in front of the
    camera. No seen cell is carved, and most unseen cells are (a cell's bounding sphere is larger
    than the cell; in the contracted shell, where a cell spans a long stretch of the world, much
    larger)."""
    from nerf.datasets.scene import Cameras
    from nerf.render.carving import camera_coverage, project

    c2w = torch.eye(4)
    c2w[:3, 3] = torch.tensor([0.2, -0.1, 3.0 if contraction == "none" else 0.9])  # contracted: inside the ball
    one = torch.ones(1)
    cams = Cameras(c2w[None], one * 200, one * 200, one * 50, one * 40, 100, 80)
    if contraction == "none":
        g = OccupancyGrid([[-1.0] * 3, [1.0] * 3], 16, 0.01)
        far = float("inf")
    else:
        g = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 16, 0.01, contraction="linf", radius=1.0, knee=0.5)
        far = 8.0
    centres, radii = g.cell_spheres(far=far)
    kept = camera_coverage(centres, radii, cams) > 0
    lin = torch.linspace(0.1, 0.9, 5)
    offsets = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), -1).reshape(-1, 3)
    idx = torch.arange(g.res ** 3)
    seen = torch.zeros(g.res ** 3, dtype=torch.bool)
    for off in offsets:
        pts = g.cell_points(idx, off.expand(idx.shape[0], 3))
        ok = pts.norm(dim=-1) <= far  # contracted: only the world within `far` of the centre counts
        x, y, depth = project(pts, c2w, 200.0, 200.0, 50.0, 40.0)
        seen |= ok & (depth > 0) & (x >= 0) & (x <= 100) & (y >= 0) & (y <= 80)
    assert 0.02 < seen.float().mean() < 0.6  # the frustum holds part of the grid, not all of it
    assert not (seen & ~kept).any()  # nothing a camera sees is carved
    share = float((~kept).sum() / (~seen).sum())  # of what none sees, the share carved
    assert share >= (0.8 if contraction == "none" else 0.35)


def test_auto_contraction_keeps_a_box_the_capture_file_states():
    """auto: linf for photos without alpha, but none where the capture file states the scene's
    box (instant-ngp's aabb_scale, an aabb) and the box is at most FILE_BOX_LIMIT wide; runs
    saved before the flag was recorded read as not stated, so they resolve as they trained."""
    from nerf.models.fast import FILE_BOX_LIMIT, FastConfig, resolve_contraction
    from nerf.scene_rays import SceneInfo

    auto = FastConfig(contraction="auto")
    photos = SceneInfo(0.1, 10.0, [[-1.0] * 3, [1.0] * 3], None)
    assert resolve_contraction(auto, photos) == "linf"
    stated = dataclasses.replace(photos, box_from_file=True)
    assert resolve_contraction(auto, stated) == "none"
    half = FILE_BOX_LIMIT / 2
    assert resolve_contraction(auto, dataclasses.replace(stated, bbox=[[-half] * 3, [half] * 3])) == "none"
    assert resolve_contraction(auto, dataclasses.replace(stated, bbox=[[-half - 1] * 3, [half + 1] * 3])) == "linf"
    assert resolve_contraction(FastConfig(contraction="linf"), stated) == "linf"  # an explicit choice stands
    assert resolve_contraction(auto, dataclasses.replace(photos, background=[1.0, 1.0, 1.0])) == "none"
    saved = dataclasses.asdict(photos)
    del saved["box_from_file"]
    assert SceneInfo(**saved).box_from_file is False
    scene = load_scene(load_config("builtin", ["data.synthetic.resolution=16"]).data, "train")
    for source, flag in (("aabb_scale", True), ("aabb", True), ("points", False), ("frusta", False)):
        info = SceneInfo.from_scene(dataclasses.replace(scene, metadata={"box_source": source}), False)
        assert info.box_from_file is flag, source


def test_auto_encoding_is_a_voxel_grid_only_in_contracted_space():
    """encoding auto: TensoRF's factors at grid_res in a box, a dense grid at dense_res (grid_res
    when 0) in contracted space; a named encoding stands either way; colmap.yaml asks for auto,
    so a capture without a stated box trains the dense grid and one with it the factors."""
    from nerf.fields.grids import DenseGrid, TensoRFVM
    from nerf.models.fast import FastConfig, FastNeRF, resolve_encoding
    from nerf.scene_rays import SceneInfo

    photos = SceneInfo(0.1, 10.0, [[-1.0] * 3, [1.0] * 3], None, n_images=4)
    stated = dataclasses.replace(photos, box_from_file=True)
    small = {"grid_res": 12, "tensorf_comp": 2, "dense_features": 3, "occ_res": 8, "steps": 16}
    cases = [({"encoding": "auto", "dense_res": 6}, photos, DenseGrid, 6),
             ({"encoding": "auto", "dense_res": 0}, photos, DenseGrid, 12),
             ({"encoding": "auto", "dense_res": 6}, stated, TensoRFVM, 12),
             ({"encoding": "tensorf", "dense_res": 6}, photos, TensoRFVM, 12),
             ({"encoding": "dense", "dense_res": 6}, stated, DenseGrid, 6)]
    for over, info, cls, res in cases:
        model = FastNeRF(FastConfig(**small, **over), info)
        assert type(model.field.encoding) is cls and model.field.encoding.res == res, (over, info.box_from_file)
        assert model.fc.encoding in ("tensorf", "dense") and model.fc.grid_res == res
    assert resolve_encoding(FastConfig(encoding="hash"), "linf").encoding == "hash"
    fast = load_config("colmap", []).model.fast
    assert fast.encoding == "auto" and 0 < fast.dense_res < fast.grid_res
    assert FastConfig(dense_res=-1).validate() and FastConfig(encoding="voxels").validate()


def test_contraction_keeps_the_cameras_uncontracted():
    """The uncontracted region holds the content box and the training cameras; a run saved
    without a camera box keeps the content box's frame it was trained with."""
    from nerf.models.fast import contraction_frame

    content = [[0.0, 0.2, 0.2], [0.4, 0.6, 0.6]]
    cams = [[-0.5, 0.0, 0.0], [0.2, 0.5, 0.5]]
    centre, radius = contraction_frame(content, cams)
    assert centre == pytest.approx([-0.05, 0.3, 0.3]) and radius == pytest.approx(0.45)
    assert contraction_frame(content) == (pytest.approx([0.2, 0.4, 0.4]), pytest.approx(0.2))
    assert contraction_frame(content, [[-1.0] * 3, [1.0] * 3]) == ([0.0, 0.0, 0.0], 1.0)  # wider: the cameras' ball


def test_affine_appearance_codes_change_only_gain_and_offset():
    """An affine code scales and shifts each colour channel of the head's output and nothing
    else; it starts as the identity."""
    from nerf.fields.grid_field import FastField
    from nerf.fields.grids import build_encoding
    from nerf.models.fast import FastConfig

    fc = FastConfig(encoding="dense", grid_res=8, dense_features=4)
    field = FastField(build_encoding(fc, [[-1.0] * 3, [1.0] * 3]), 16, 7, 16, 2, appearance_dim=4)
    x, d = torch.rand(10, 3) * 2 - 1, torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    code = torch.randn(10, 4)
    _, feats = field.density_features(x)
    base = field.colour(feats, d, torch.zeros(10, 4))
    assert torch.allclose(field.colour(feats, d, code), base)  # identity at the start
    with torch.no_grad():
        field.appearance_affine.bias.copy_(torch.tensor([0.1, 0.0, -0.2, 0.05, 0.0, 0.0]))
    want = base * torch.exp(torch.tensor([0.1, 0.0, -0.2])) + torch.tensor([0.05, 0.0, 0.0])
    assert torch.allclose(field.colour(feats, d, code), want, atol=1e-6)
