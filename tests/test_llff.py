"""The LLFF loader: a small capture written by the test (conventions, errors, spherify), and the
real fern scene from ../shared/data (skipped with a reason when absent)."""
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerf.datasets import DatasetError, load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.registry import detect_format
from nerf.render.paths import average_pose, spiral_path

FERN_BOUNDS = (16.985296178676084, 80.00209740336334)  # min and max of fern's poses_bounds.npy


def write_llff(root, c2w_gl, bounds, hw=(12, 16), full_hw=(48, 64), focal=60.0, folder="images_4"):
    """poses_bounds.npy from OpenGL c2w (n, 4, 4), plus `folder` with n small PNGs."""
    rows = []
    for m in c2w_gl:
        # OpenGL [right, up, back] -> LLFF [down, right, back]
        llff = np.concatenate([-m[:3, 1:2], m[:3, 0:1], m[:3, 2:4]], 1)
        rows.append(np.concatenate([np.concatenate([llff, [[full_hw[0]], [full_hw[1]], [focal]]], 1).ravel(),
                                    bounds]))
    root.mkdir(parents=True, exist_ok=True)
    np.save(root / "poses_bounds.npy", np.array(rows))
    (root / folder).mkdir()
    for i in range(len(c2w_gl)):
        iio.imwrite(root / folder / f"img{i:02d}.png", np.full((*hw, 3), 10 * i, dtype=np.uint8))


def forward_facing(n=9, tilt=0.0):
    out = []
    for i in range(n):
        c = np.eye(4)
        a = tilt
        c[:3, :3] = [[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]]
        c[:3, 3] = [0.3 * math.cos(i), 0.2 * math.sin(i), 5.0 + 0.05 * i]
        out.append(c)
    return np.stack(out)


def test_conventions_rescale_recentre_and_split(tmp_path):
    write_llff(tmp_path, forward_facing(tilt=0.2), [2.0, 10.0])
    assert detect_format(tmp_path) == "llff"
    opts = DataOptions(path=str(tmp_path), downscale=4)
    train, test = load_scene(opts, "train"), load_scene(opts, "test")
    assert len(train) == 7 and test.image_names == ["img00", "img08"] and test.metadata["indices"] == [0, 8]
    assert train.ndc and (train.near, train.far) == (0.0, 1.0) and train.alpha is None
    assert torch.equal(train.background, torch.zeros(3))
    # near bound * scale = 1 / 0.75
    assert min(b[0] for b in train.metadata["bounds"] + test.metadata["bounds"]) == pytest.approx(1 / 0.75)
    assert train.metadata["scale"] == pytest.approx(1 / (2.0 * 0.75))
    # recentred: the average camera of all poses is the identity (the tilt is gone)
    allc = torch.cat([train.cameras.c2w, test.cameras.c2w]).double()
    assert torch.allclose(average_pose(allc), torch.eye(4, dtype=torch.float64), atol=1e-5)
    # focal scaled from 64 px full width to the 16 px images; principal point at the centre
    assert torch.allclose(train.cameras.fx, torch.full((7,), 15.0)) and train.cameras.cx[0] == 8.0
    assert (train.width, train.height) == (16, 12)
    # without NDC: world bounds (0.9 * nearest, farthest) after rescaling
    plain = load_scene(DataOptions(path=str(tmp_path), downscale=4, ndc=False), "train")
    assert not plain.ndc and plain.near == pytest.approx(0.9 / 0.75) and plain.far == pytest.approx(10 / 1.5)


def test_missing_image_folder_lists_what_is_there(tmp_path):
    write_llff(tmp_path, forward_facing(), [2.0, 10.0], folder="images_4")
    (tmp_path / "images_2").mkdir()
    with pytest.raises(DatasetError, match=r"images_8: image folder for data.downscale=8 not found "
                                           r"\(image folders present: images_2, images_4\)"):
        load_scene(DataOptions(path=str(tmp_path), downscale=8), "train")


def test_bad_poses_bounds(tmp_path):
    (tmp_path / "images").mkdir()
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    with pytest.raises(DatasetError, match=r"poses_bounds.npy: expected an \(n_images, 17\) array, got shape \(3, 15\)"):
        load_scene(DataOptions(path=str(tmp_path)), "train")
    write_llff(tmp_path / "b", forward_facing(n=3), [2.0, 10.0], folder="images")
    (tmp_path / "b" / "images" / "img02.png").unlink()
    with pytest.raises(DatasetError, match="holds 2 images but poses_bounds.npy has 3 poses"):
        load_scene(DataOptions(path=str(tmp_path / "b")), "train")


def test_spherify_inward_facing(tmp_path):
    views = []
    for i in range(12):
        a = 2 * math.pi * i / 12
        eye = np.array([4 * math.cos(a), 4 * math.sin(a), 1.5]) + [1.0, 2.0, 0.0]
        back = (eye - [1.0, 2.0, 0.0]) / np.linalg.norm(eye - [1.0, 2.0, 0.0])
        right = np.cross([0, 0, 1.0], back)
        right /= np.linalg.norm(right)
        c = np.eye(4)
        c[:3, 0], c[:3, 1], c[:3, 2], c[:3, 3] = right, np.cross(back, right), back, eye
        views.append(c)
    write_llff(tmp_path, np.stack(views), [2.0, 6.0])
    opts = DataOptions(path=str(tmp_path), downscale=4, spherify=True)
    s = load_scene(opts, "train")
    assert not s.ndc and s.metadata["render_path"] == "orbit"
    pos = torch.cat([s.cameras.c2w, load_scene(opts, "test").cameras.c2w])[:, :3, 3].double()
    # centred on the point the cameras look at, RMS radius 1
    assert pos.norm(dim=-1).pow(2).mean().sqrt() == pytest.approx(1.0, abs=1e-5)
    fwd = -s.cameras.c2w[:, :3, 2]
    p = s.cameras.c2w[:, :3, 3]
    closest = p + ((-p) * fwd).sum(-1, keepdim=True) * fwd  # foot of the origin on each optical axis
    assert closest.norm(dim=-1).max() < 1e-4
    assert 0 < s.near < s.far


def test_spiral_stays_within_the_training_cameras():
    rng = np.random.default_rng(0)
    c2w = torch.eye(4).repeat(15, 1, 1)
    c2w[:, :3, 3] = torch.tensor(rng.normal(0, [0.3, 0.2, 0.05], (15, 3)), dtype=torch.float32)
    path = spiral_path(c2w, near=1.3, far=6.0, n_frames=60)
    _check_spiral(c2w, path)


def _check_spiral(train_c2w, path):
    avg = average_pose(train_c2w)
    local = lambda c: (c[:, :3, 3].double() - avg[:3, 3]) @ avg[:3, :3]  # noqa: E731
    lo, hi = local(train_c2w).min(0).values, local(train_c2w).max(0).values
    p = local(path)
    assert torch.all(p >= lo - 1e-6) and torch.all(p <= hi + 1e-6)
    # it moves, looks forward like the training cameras, and its frames are rotations
    assert (p.max(0).values - p.min(0).values)[:2].min() > 0.2 * (hi - lo)[:2].min()
    assert torch.all((path[:, :3, 2] * avg[:3, 2].float()).sum(-1) > 0.9)
    rot = path[:, :3, :3]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(len(path), 3, 3), atol=1e-5)


# ------------------------------------------------------------------------------------------ fern

def test_fern_loads(fern_dir):
    opts = DataOptions(path=str(fern_dir), downscale=8)
    train, test = load_scene(opts, "train"), load_scene(opts, "test")
    assert len(train) + len(test) == 20 == train.metadata["n_images"]
    assert test.metadata["indices"] == [0, 8, 16] and len(train) == 17
    assert test.image_names == ["image000", "image008", "image016"]
    assert train.images.shape == (17, 378, 504, 3) and train.images.dtype == torch.float32
    assert train.ndc and train.near == 0 and train.far == 1
    bounds = np.array(train.metadata["bounds"] + test.metadata["bounds"])
    assert bounds.shape == (20, 2)
    scale = 1 / (FERN_BOUNDS[0] * 0.75)
    assert bounds.min() == pytest.approx(FERN_BOUNDS[0] * scale) and bounds.max() == pytest.approx(FERN_BOUNDS[1] * scale)
    assert train.metadata["world_bounds"] == pytest.approx([FERN_BOUNDS[0] * scale, FERN_BOUNDS[1] * scale])
    # focal: 3260.5 px at 4032 wide -> / 8
    assert float(train.cameras.fx[0]) == pytest.approx(3260.526333 / 8, rel=1e-5)
    # forward-facing: all cameras look down -z within a few degrees, in front of the NDC near plane
    assert torch.all(train.cameras.c2w[:, 2, 2] > 0.95)
    assert train.cameras.c2w[:, 2, 3].abs().max() < 0.5


def test_fern_spiral_stays_within_the_training_cameras(fern_dir):
    train = load_scene(DataOptions(path=str(fern_dir), downscale=8), "train")
    near, far = train.metadata["world_bounds"]
    _check_spiral(train.cameras.c2w, spiral_path(train.cameras.c2w, near, far, 120))
