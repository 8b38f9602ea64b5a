"""Blender intrinsics at a downscale that does not divide the image size (nerf-pytorch's values)."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from nerf.datasets import load_scene
from nerf.datasets.options import DataOptions

ANGLE = 0.6911112070083618  # lego's camera_angle_x


def _blender_folder(root, size=20):
    """A Blender folder whose images are `size` pixels square (RGBA), one frame per split."""
    frame = {"file_path": "./r_0", "transform_matrix": np.eye(4).tolist()}
    frame["transform_matrix"][2][3] = 4.0
    rgba = np.zeros((size, size, 4), np.uint8)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(root / "r_0.png")
    for split in ("train", "val", "test"):
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": ANGLE, "frames": [frame]}))
    return root


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_focal_and_principal_point_follow_the_full_image(tmp_path, k):
    """focal = W / (2 tan(angle / 2)) / k and cx = cy = W / 2 / k in downscaled pixels, whatever
    the crop: at W = 20 and k = 3 the image is 6 pixels wide, cx 3.333, focal 1/3 of the full one."""
    root = _blender_folder(tmp_path)
    scene = load_scene(DataOptions(path=str(root), downscale=k), "train")
    cams = scene.cameras
    assert cams.width == 20 // k and cams.height == 20 // k
    focal = 20 / (2 * math.tan(ANGLE / 2)) / k
    assert float(cams.fx[0]) == pytest.approx(focal, rel=1e-6)
    assert float(cams.fy[0]) == pytest.approx(focal, rel=1e-6)
    assert float(cams.cx[0]) == pytest.approx(10 / k, rel=1e-6)
    assert float(cams.cy[0]) == pytest.approx(10 / k, rel=1e-6)
    # the centre ray of the full image (pixel coordinate W / 2) still points straight ahead
    from nerf.render.rays import rays_from_pixels

    x = y = torch.tensor([10.0 / k])
    rays = rays_from_pixels(cams, torch.zeros(1, dtype=torch.long), x, y, 2.0, 6.0)
    d = rays.directions[0] / rays.directions[0].norm()
    assert torch.allclose(d, torch.tensor([0.0, 0.0, -1.0], dtype=d.dtype), atol=1e-6)
