"""A split loaded a block of views at a time (data.view_offset, data.view_count) is the same split:
evaluation relies on it to score a large test split without holding all of it in memory."""
import dataclasses

import pytest
import torch
from test_captures import intrinsics_for, make_capture, write_colmap, write_transforms
from test_llff import forward_facing, write_llff

from nerf.datasets import DatasetError, load_scene
from nerf.datasets.options import DataOptions, SyntheticOptions


def blocks_of(opts: DataOptions, split: str, length: int):
    whole = load_scene(opts, split)
    total = whole.metadata["views_in_split"]
    assert total == len(whole)
    parts = [load_scene(dataclasses.replace(opts, view_offset=o, view_count=length), split)
             for o in range(0, total, length)]
    assert all(p.metadata["views_in_split"] == total for p in parts)
    return whole, parts


def assert_blocks_make_the_whole(whole, parts):
    assert sum(len(p) for p in parts) == len(whole)
    assert torch.equal(torch.cat([p.images for p in parts]), whole.images)
    assert torch.equal(torch.cat([p.cameras.c2w for p in parts]), whole.cameras.c2w)
    assert torch.equal(torch.cat([p.cameras.fx for p in parts]), whole.cameras.fx)
    assert [n for p in parts for n in p.image_names] == whole.image_names
    if whole.depth is not None:
        assert torch.equal(torch.cat([p.depth for p in parts]), whole.depth)
    for p in parts:
        assert (p.near, p.far) == (whole.near, whole.far) and torch.equal(p.bbox, whole.bbox)


@pytest.mark.parametrize("max_images", [0, 4])
def test_builtin_split_in_blocks(max_images):
    opts = DataOptions(max_images=max_images, synthetic=SyntheticOptions(resolution=12, supersample=1, n_test=7))
    whole, parts = blocks_of(opts, "test", 3)
    assert len(whole) == (max_images or 7) and [len(p) for p in parts] == ([3, 3, 1] if not max_images else [3, 1])
    assert_blocks_make_the_whole(whole, parts)


def test_builtin_training_errors_follow_the_view_not_the_block():
    """Exposure changes and pose errors are drawn per view of the whole split."""
    opts = DataOptions(synthetic=SyntheticOptions(resolution=12, supersample=1, n_train=6, exposure=0.3,
                                                  pose_noise=2.0))
    whole, parts = blocks_of(opts, "train", 4)
    assert_blocks_make_the_whole(whole, parts)


def test_capture_formats_in_blocks(tmp_path):
    views, points = make_capture()
    cameras = [("OPENCV", intrinsics_for("OPENCV")[0])]
    write_transforms(tmp_path / "ngp", views, cameras)
    write_colmap(tmp_path / "colmap", views, points, cameras, "bin")
    write_llff(tmp_path / "llff", forward_facing(n=17), [2.0, 10.0])
    for name, fmt, downscale in (("ngp", "transforms", 1), ("colmap", "colmap", 1), ("llff", "llff", 4)):
        opts = DataOptions(path=str(tmp_path / name), format=fmt, holdout_every=3, downscale=downscale)
        whole, parts = blocks_of(opts, "train", 2)
        assert len(parts) > 2, name
        assert_blocks_make_the_whole(whole, parts)


def test_a_block_past_the_end_is_refused_in_one_line():
    opts = DataOptions(view_offset=7, synthetic=SyntheticOptions(resolution=12, supersample=1, n_test=7))
    with pytest.raises(DatasetError, match=r"data.view_offset=7 is past the 7 views selected"):
        load_scene(opts, "test")
    assert "data.view_offset/view_count: must be >= 0" in DataOptions(view_count=-1).validate()[0]
