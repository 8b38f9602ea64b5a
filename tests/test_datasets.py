"""Loaders: the Blender format on the real lego scene, the built-in scene, image operations."""
import json
import math

import numpy as np
import pytest
import torch

from nerf.datasets import DatasetError, load_scene
from nerf.datasets.imageops import composite_premultiplied, composite_stack_, downscale_area, premultiply
from nerf.datasets.options import DataOptions, SyntheticOptions
from nerf.datasets.scene import evenly_spaced
from nerf.datasets.synthetic import FAR, NEAR, shade


def test_downscale_averages_premultiplied_colour():
    # a 2x2 block: one opaque red pixel, three transparent ones
    rgba = torch.zeros(2, 2, 4)
    rgba[0, 0] = torch.tensor([1.0, 0.0, 0.0, 1.0])
    rgba[0, 1] = torch.tensor([0.0, 1.0, 0.0, 0.0])  # green but fully transparent: must not bleed
    small = downscale_area(premultiply(rgba), 2)[0, 0]
    assert torch.allclose(small, torch.tensor([0.25, 0.0, 0.0, 0.25]))
    over_white = composite_premultiplied(small, torch.ones(3))
    assert torch.allclose(over_white, torch.tensor([1.0, 0.75, 0.75]))


def test_stack_composite_in_place_matches_per_pixel_rule():
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(3, 5, 4, generator=g)
    rgb = torch.rand(3, 5, 4, 3, generator=g) * alpha[..., None]  # premultiplied
    bg = torch.tensor([1.0, 0.5, 0.0])
    want = composite_premultiplied(torch.cat([rgb, alpha[..., None]], -1), bg)
    out = composite_stack_(rgb, alpha, bg)
    assert out.data_ptr() == rgb.data_ptr()  # no second copy of the split
    assert torch.allclose(out, want, atol=1e-6)


def test_evenly_spaced_views():
    assert evenly_spaced(200, 5) == [0, 50, 100, 149, 199]
    assert evenly_spaced(10, 0) == list(range(10))
    assert evenly_spaced(3, 10) == [0, 1, 2]


def test_lego_blender_loader(lego_dir):
    opts = DataOptions(path=str(lego_dir), downscale=8)
    sizes = {}
    for split in ("train", "val", "test"):
        meta = json.loads((lego_dir / f"transforms_{split}.json").read_text())
        sizes[split] = len(meta["frames"])
    assert sizes == {"train": 100, "val": 100, "test": 200}
    train = load_scene(opts, "train")
    assert train.images.shape == (100, 100, 100, 3)
    assert train.cameras.c2w.shape == (100, 4, 4)
    assert train.images.dtype == torch.float32 and 0 <= train.images.min() and train.images.max() <= 1
    angle = meta["camera_angle_x"]
    assert abs(train.cameras.fx[0].item() - 0.5 * 800 / math.tan(0.5 * angle) / 8) < 1e-3
    assert abs(train.cameras.fx[0].item() - 138.8889) < 1e-3  # the paper's 1111.11 px focal at 800 px, / 8
    assert train.cameras.cx[0] == 50.0 and train.near == 2.0 and train.far == 6.0
    # rigid poses, cameras about 4 units from the origin
    rot = train.cameras.c2w[:, :3, :3]
    assert torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3).expand(100, 3, 3), atol=1e-4)
    assert torch.allclose(train.cameras.c2w[:, :3, 3].norm(dim=-1), torch.full((100,), 4.031), atol=0.01)
    # composited onto white: corners (pure background) are white, and transparent pixels are exactly bg
    assert torch.all(train.images[:, 0, 0] == 1.0)
    bg_pixels = train.alpha == 0
    assert torch.all(train.images[bg_pixels] == 1.0)
    black = load_scene(DataOptions(path=str(lego_dir), downscale=8, background="black", max_images=3), "test")
    assert torch.all(black.images[black.alpha == 0] == 0.0)
    assert black.images.shape == (3, 100, 100, 3) and black.image_names == ["r_0", "r_100", "r_199"]


@pytest.mark.parametrize("factor,size", [(2, 400), (4, 200)])
def test_lego_downscaled_sizes(lego_dir, factor, size):
    s = load_scene(DataOptions(path=str(lego_dir), downscale=factor, max_images=2), "val")
    assert s.images.shape == (2, size, size, 3)
    assert s.width == s.height == size
    assert abs(s.cameras.fx[0].item() * factor - 1111.111) < 0.01


def test_builtin_scene_depth_and_colour_are_exact():
    opts = DataOptions(synthetic=SyntheticOptions(resolution=32, n_train=3, n_val=1, n_test=2, supersample=1))
    s = load_scene(opts, "train")
    assert s.images.shape == (3, 32, 32, 3) and s.depth.shape == (3, 32, 32)
    hit = torch.isfinite(s.depth)
    assert 0.1 < hit.float().mean() < 0.9
    assert torch.all(s.depth[hit] > NEAR) and torch.all(s.depth[hit] < FAR)
    # alpha (no supersampling) is exactly the hit mask; misses show the white background
    assert torch.equal(s.alpha > 0, hit)
    assert torch.all(s.images[~hit] == 1.0)
    # the point at the true depth lies on the sphere or box that was hit: check one sphere pixel
    # independently: a ray from the camera to the big sphere's centre hits at distance |c - o| - r
    o = s.cameras.c2w[0, :3, 3]
    c = torch.tensor([-0.40, -0.15, 0.00])
    d = torch.nn.functional.normalize(c - o, dim=0)
    _, t = shade(o[None], d[None])
    assert abs(t.item() - ((c - o).norm() - 0.45).item()) < 1e-5


def test_builtin_scene_is_deterministic_and_splits_differ():
    opts = DataOptions(synthetic=SyntheticOptions(resolution=16, n_train=4, n_val=1, n_test=4))
    a, b = load_scene(opts, "train"), load_scene(opts, "train")
    assert torch.equal(a.images, b.images)
    t = load_scene(opts, "test")
    assert not torch.allclose(a.cameras.c2w, t.cameras.c2w)


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_scene(DataOptions(path=str(tmp_path / "nope")), "train")
    with pytest.raises(DatasetError, match="no known dataset format"):
        load_scene(DataOptions(path=str(tmp_path)), "train")
    (tmp_path / "transforms_train.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"transforms_train.json: malformed JSON"):
        load_scene(DataOptions(path=str(tmp_path)), "train")
    (tmp_path / "transforms_train.json").write_text(json.dumps(
        {"camera_angle_x": 0.69, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}))
    with pytest.raises(DatasetError, match=r"r_0.png: image file not found"):
        load_scene(DataOptions(path=str(tmp_path)), "train")


def test_similarity_alignment_recovers_a_known_transform_and_measures_pose_errors():
    """Poses moved by a known scale, rotation and shift align back exactly (errors ~0); a camera
    turned by 10 degrees shows a 10-degree rotation error and no centre error."""
    from nerf.datasets.poses import aligned_pose_errors, similarity_transform

    rng = np.random.default_rng(0)
    ref = np.tile(np.eye(4), (12, 1, 1))
    ref[:, :3, 3] = rng.normal(size=(12, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot = q * np.sign(np.linalg.det(q))
    est = ref.copy()
    est[:, :3, :3] = rot.T @ ref[:, :3, :3]
    est[:, :3, 3] = (0.5 * (rot.T @ (ref[:, :3, 3] - 1.0).T)).T  # ref = 2 R est + 1
    s, r, t = similarity_transform(est[:, :3, 3], ref[:, :3, 3])
    assert s == pytest.approx(2.0) and np.allclose(r, rot) and np.allclose(t, 1.0)
    angle, centre = aligned_pose_errors(est, ref)
    assert angle.max() < 1e-4 and centre.max() < 1e-9
    c, sn = math.cos(math.radians(10)), math.sin(math.radians(10))
    est[3, :3, :3] = est[3, :3, :3] @ np.array([[c, -sn, 0], [sn, c, 0], [0, 0, 1]])
    angle, centre = aligned_pose_errors(est, ref)
    assert angle[3] == pytest.approx(10.0, abs=1e-4) and np.delete(angle, 3).max() < 1e-4 and centre.max() < 1e-9
