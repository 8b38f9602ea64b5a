"""Which loader a capture folder gets, and the five real captures in ../shared/data/captures (each
skipped with a reason when absent) detected and loaded with default options.

Folders that hold two formats: a COLMAP model beside a poses_bounds.npy is COLMAP unless the poses
are forward-facing (LLFF's own scenes ship their sparse/ model); a lone transforms_train.json that
holds frames is an instant-ngp capture, not Blender.
"""
import math
from pathlib import Path

import numpy as np
import pytest
from test_captures import intrinsics_for, make_capture, write_colmap
from test_llff import forward_facing, write_llff

from nerf.datasets import load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import holdout_indices
from nerf.datasets.registry import detect_format

CAPTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "captures"


def test_colmap_wins_over_a_walk_around_poses_bounds(tmp_path):
    views, points = make_capture()  # a ring of cameras looking inward
    write_colmap(tmp_path, views, points, [("PINHOLE", intrinsics_for("PINHOLE")[0])], "bin")
    write_llff(tmp_path, np.stack(views), [2.0, 10.0], folder="images_8")
    assert detect_format(tmp_path) == "colmap"
    s = load_scene(DataOptions(path=str(tmp_path)), "train")
    assert s.metadata["format"] == "colmap" and not s.ndc
    # data.format names the loader and skips detection
    assert load_scene(DataOptions(path=str(tmp_path), format="llff", downscale=8), "train").metadata["format"] == "llff"


def test_forward_facing_poses_bounds_stays_llff_beside_a_sparse_model(tmp_path):
    write_llff(tmp_path, forward_facing(tilt=0.2), [2.0, 10.0], folder="images_8")
    views, points = make_capture()
    write_colmap(tmp_path / "other", views[:9], points, [("PINHOLE", intrinsics_for("PINHOLE")[0])], "bin")
    (tmp_path / "other" / "sparse").rename(tmp_path / "sparse")
    assert detect_format(tmp_path) == "llff"
    # without a poses_bounds.npy the same model is COLMAP
    (tmp_path / "poses_bounds.npy").unlink()
    assert detect_format(tmp_path) == "colmap"


def test_colmap_without_points_gets_the_box_where_frusta_meet(tmp_path):
    """The box comes from the points when the model has them, else from the cameras (it used to be
    a unit cube around the cameras' mean position)."""
    views, points = make_capture()
    write_colmap(tmp_path, views, points, [("PINHOLE", intrinsics_for("PINHOLE")[0])], "bin")
    (tmp_path / "sparse" / "0" / "points3D.bin").unlink()
    s = load_scene(DataOptions(path=str(tmp_path)), "train")
    assert s.metadata["box_source"] == "frusta"
    # the cameras look at the world origin from 3 away: it lies inside, and the box is smaller than a
    # cube holding the cameras
    origin = -np.array(s.metadata["centre"]) * s.metadata["scale"]
    box = s.bbox.numpy()
    assert np.all(box[0] < origin) and np.all(origin < box[1]) and (box[1] - box[0]).max() < 2.0


# -------------------------------------------------------------------------- the shared captures

# name: (format, frames, image width x height at default options, camera model, box source)
EXPECTED = {
    "egypt": ("transforms", 302, (480, 270), "OPENCV", "frusta"),
    "coke_can": ("transforms", 111, (540, 960), "OPENCV", "aabb_scale"),
    "cup_desk": ("colmap", 77, (800, 600), None, None),
    "bird_figure": ("colmap", 184, (544, 960), None, None),
    "beer_can": ("colmap", 71, (720, 1280), "radial", None),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shared_captures_detect_and_load(name):
    root = CAPTURES / name
    if not root.is_dir():
        pytest.skip(f"real data not found: {root} (the captures live in ../shared/data beside the project)")
    fmt, n, size, model, box_source = EXPECTED[name]
    assert detect_format(root) == fmt
    test = load_scene(DataOptions(path=str(root)), "test")  # default options: every 8th frame
    assert len(test) == math.ceil(n / 8) and test.metadata["n_images"] == n
    assert (test.width, test.height) == size and test.metadata["format"] == fmt
    train = load_scene(DataOptions(path=str(root), max_images=3), "train")  # 3 of them: a quick read
    assert len(holdout_indices(n, "train", 8)) == n - len(test) and len(train) == 3
    assert (train.width, train.height) == size
    assert np.allclose(train.bbox.numpy(), test.bbox.numpy()) and train.near < train.far
    if fmt == "transforms":
        assert train.metadata["camera_model"] == model and train.metadata["box_source"] == box_source
    dist = train.cameras.distortion
    assert (dist is not None) == (model is not None)
    if name == "egypt":  # images_4 only: the intrinsics of the 1920x1080 originals scaled by 1/4
        assert train.metadata["image_folder"] == "images_4"
        assert float(train.cameras.fx[0]) == pytest.approx(1676.0808995417506 / 4, rel=1e-6)
        assert float(train.cameras.cx[0]) == pytest.approx(961.425586425964 / 4, rel=1e-6)
    if name == "coke_can":
        assert train.metadata["file"] == "transforms_train.json"
