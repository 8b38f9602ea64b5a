"""transforms.json (nerfstudio and instant-ngp): every camera key read right or refused in one line.

Rays are checked against directions computed here by hand from the lens formulas (not by the
project's inverse), for OpenCV with k3, OpenCV fisheye (keys, nerfstudio's distortion_params list
and instant-ngp's is_fisheye), plus images_N folders, per-frame intrinsics and sizes, paths
without extension, both kinds of masks, the aabb key, PLY points and the box from meeting frusta.
"""
import json
import math
import struct

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerf.datasets import DatasetError, load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.registry import detect_format
from nerf.datasets.transforms_json import read_ply_xyz
from nerf.render.rays import rays_from_pixels

W, H = 40, 30


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def ring(n=10, radius=3.0, arc=2 * math.pi, centre=(0.0, 0.0, 0.0), height=1.0):
    c = np.asarray(centre)
    return [look_at(c + [radius * math.cos(arc * i / n), radius * math.sin(arc * i / n), height], c)
            for i in range(n)]


def write_capture(root, views, top=None, frame_keys=None, folder="images", size=(H, W), ext=".png",
                  file_ext=True, name="transforms.json"):
    """Images images/frame_XXX<ext> (random colours) and a transforms file; frame_keys(i) -> dict."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    frames = []
    for i, c2w in enumerate(views):
        stem = f"frame_{i:03d}"
        hw = size(i) if callable(size) else size
        iio.imwrite(root / folder / f"{stem}{ext}", rng.integers(0, 256, (*hw, 3), dtype=np.uint8))
        fr = {"file_path": f"images/{stem}{ext if file_ext else ''}", "transform_matrix": c2w.tolist()}
        fr.update(frame_keys(i) if frame_keys else {})
        frames.append(fr)
    meta = {"frames": frames}
    meta.update(top if top is not None else {"fl_x": 30.0, "fl_y": 31.0, "cx": 20.5, "cy": 14.5, "w": W, "h": H})
    (root / name).write_text(json.dumps(meta))
    return root


def load(root, split="train", **kw):
    return load_scene(DataOptions(path=str(root), **kw), split)


def world_dirs(scene, d_cam):
    """Camera-space directions (n, 3) (OpenGL) -> world, through camera 0's rotation."""
    return torch.nn.functional.normalize(d_cam, dim=-1) @ scene.cameras.c2w[0, :3, :3].double().T


def rays_of(scene, u, v):
    idx = torch.zeros(len(u), dtype=torch.long)
    return rays_from_pixels(scene.cameras, idx, torch.as_tensor(u, dtype=torch.float32),
                            torch.as_tensor(v, dtype=torch.float32), 0.1, 10.0).directions.double()


# ----------------------------------------------------------------------------------- lens models

FISH = {"k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": -0.0005}
FX, FY, CX, CY = 12.0, 12.5, 20.3, 14.8  # a short focal length: the image spans over 110 degrees


def fisheye_pixels():
    """Ray angles theta (up to 100 degrees: beyond a pinhole's reach) and azimuths phi, and the
    pixels the equidistant fisheye model puts them at, computed by hand."""
    theta = np.array([0.0, 0.1, 0.4, 0.8, 1.2, 1.5, 1.75])
    phi = np.array([0.0, 0.7, 2.0, -1.0, 3.0, -2.5, 1.2])
    t2 = theta ** 2
    theta_d = theta * (1 + FISH["k1"] * t2 + FISH["k2"] * t2 ** 2 + FISH["k3"] * t2 ** 3 + FISH["k4"] * t2 ** 4)
    u, v = CX + FX * theta_d * np.cos(phi), CY + FY * theta_d * np.sin(phi)
    # OpenCV camera (x right, y down, z forward) -> ours (x right, y up, looking down -z)
    d = np.stack([np.sin(theta) * np.cos(phi), -np.sin(theta) * np.sin(phi), -np.cos(theta)], -1)
    return u, v, torch.from_numpy(d)


@pytest.mark.parametrize("spelling", ["camera_model", "distortion_params", "is_fisheye"])
def test_fisheye_rays_match_hand_computed_directions(tmp_path, spelling):
    top = {"fl_x": FX, "fl_y": FY, "cx": CX, "cy": CY, "w": W, "h": H}
    if spelling == "camera_model":
        top.update(camera_model="OPENCV_FISHEYE", **FISH)
    elif spelling == "distortion_params":  # nerfstudio's list: k1 k2 k3 k4 p1 p2
        top.update(camera_model="OPENCV_FISHEYE", distortion_params=[*FISH.values(), 0.0, 0.0])
    else:  # instant-ngp
        top.update(is_fisheye=True, **FISH)
    s = load(write_capture(tmp_path, ring(), top=top), holdout_every=100)
    assert s.metadata["camera_model"] == "OPENCV_FISHEYE" and s.cameras.distortion.shape == (len(s), 7)
    u, v, d = fisheye_pixels()
    assert torch.allclose(rays_of(s, u, v), world_dirs(s, d), atol=2e-6)
    # the pinhole reading of the same file looks elsewhere (and cannot see past 90 degrees at all)
    pin = load(write_capture(tmp_path / "pin", ring(), top={k: top[k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")}),
               holdout_every=100)
    assert (rays_of(pin, u, v) - world_dirs(s, d)).norm(dim=-1).max() > 0.5


def test_opencv_k3_rays_match_hand_computed_directions(tmp_path):
    k = {"k1": -0.2, "k2": 0.05, "k3": -0.01, "p1": 0.001, "p2": -0.002}
    top = {"fl_x": 30.0, "fl_y": 31.0, "cx": 20.5, "cy": 14.5, "w": W, "h": H, "camera_model": "OPENCV", **k}
    s = load(write_capture(tmp_path, ring(), top=top), holdout_every=100)
    assert s.cameras.distortion.shape == (len(s), 7) and s.metadata["camera_model"] == "OPENCV"
    x, y = np.meshgrid(np.linspace(-0.6, 0.6, 7), np.linspace(-0.45, 0.45, 5))
    x, y = x.ravel(), y.ravel()
    r2 = x * x + y * y
    radial = 1 + k["k1"] * r2 + k["k2"] * r2 ** 2 + k["k3"] * r2 ** 3
    xd = x * radial + 2 * k["p1"] * x * y + k["p2"] * (r2 + 2 * x * x)
    yd = y * radial + k["p1"] * (r2 + 2 * y * y) + 2 * k["p2"] * x * y
    d = torch.from_numpy(np.stack([x, -y, -np.ones_like(x)], -1))
    assert torch.allclose(rays_of(s, 20.5 + 30.0 * xd, 14.5 + 31.0 * yd), world_dirs(s, d), atol=2e-6)


@pytest.mark.parametrize("keys,needle", [
    ({"camera_model": "FISHEYE624", "distortion_params": [0.0] * 12}, "camera_model FISHEYE624 is not supported"),
    ({"camera_model": "EQUIRECTANGULAR"}, "camera_model EQUIRECTANGULAR is not supported"),
    ({"camera_model": "VR180_L"}, "camera_model VR180_L is not supported"),
    ({"camera_model": 3}, "'camera_model' must be a string"),
    ({"ftheta_p0": 0.0, "ftheta_p1": 1.0}, "instant-ngp's FTheta lens"),
    ({"equirectangular": True}, "instant-ngp's Equirectangular lens"),
    ({"is_fisheye": True, "k1": 0.1, "p1": 0.01}, "'p1' = 0.01 on a fisheye camera"),
    ({"is_fisheye": True, "camera_model": "OPENCV"}, "is_fisheye true but camera_model OPENCV"),
    ({"k4": 0.3}, "'k4' = 0.3 is not supported on a perspective camera"),
    ({"camera_model": "OPENCV", "distortion_params": [0.1, 0.2]}, "'distortion_params' must be a list of 6"),
])
def test_unsupported_lenses_are_refused_in_one_line(tmp_path, keys, needle):
    top = {"fl_x": 30.0, "w": W, "h": H, **keys}
    write_capture(tmp_path, ring(3), top=top)
    with pytest.raises(DatasetError, match=needle) as exc:
        load(tmp_path)
    assert "\n" not in str(exc.value) and "transforms.json" in str(exc.value)


def test_per_frame_intrinsics_and_lens(tmp_path):
    """Each frame's own fl_x / cx / lens wins over the top level; one fisheye among pinholes."""
    def keys(i):
        out = {"fl_x": 30.0 + i, "cx": 20.0 + 0.1 * i}
        if i == 3:
            out.update(camera_model="OPENCV_FISHEYE", k1=0.05)
        return out
    write_capture(tmp_path, ring(), top={"fl_y": 29.0, "cy": 15.0, "w": W, "h": H}, frame_keys=keys)
    s = load(tmp_path, holdout_every=100)
    assert torch.allclose(s.cameras.fx, torch.tensor([30.0 + i for i in range(1, 10)]))
    assert torch.allclose(s.cameras.cx, torch.tensor([20.0 + 0.1 * i for i in range(1, 10)]))
    assert torch.allclose(s.cameras.fy, torch.full((9,), 29.0))
    assert s.cameras.distortion[2, 6] == 1 and s.cameras.distortion[:, 6].sum() == 1  # frame 3 only
    assert s.metadata["camera_model"] == "OPENCV_FISHEYE, PINHOLE"


def test_paths_without_extension_and_windows_separators(tmp_path):
    write_capture(tmp_path, ring(), ext=".jpg", file_ext=False)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["frames"][1]["file_path"] = meta["frames"][1]["file_path"].replace("/", "\\")
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    s = load(tmp_path)
    assert len(s) == 8 and s.image_names[0] == "frame_001" and (s.width, s.height) == (W, H)


# ---------------------------------------------------------------------------------- image sizes

def test_images_n_folder_when_the_originals_are_missing(tmp_path):
    """nerfstudio's downscale convention: only images_2/ exists; intrinsics scale by 1/2."""
    write_capture(tmp_path, ring(), folder="images_2", size=(H // 2, W // 2))
    s = load(tmp_path)
    assert (s.width, s.height) == (W // 2, H // 2) and s.metadata["image_folder"] == "images_2"
    assert torch.allclose(s.cameras.fx, torch.full((8,), 15.0)) and torch.allclose(s.cameras.cy, torch.full((8,), 7.25))
    # data.downscale 4 reads images_2 and area-averages by 2; 3 divides nothing present: one line
    s4 = load(tmp_path, downscale=4)
    assert (s4.width, s4.height) == (W // 4, H // 4) and torch.allclose(s4.cameras.fx, torch.full((8,), 7.5))
    with pytest.raises(DatasetError, match=r"frame_000.png: image file not found.*data.downscale=3.*images_2"):
        load(tmp_path, downscale=3)


def test_downscale_reads_the_images_n_copy_when_present(tmp_path):
    write_capture(tmp_path, ring())
    (tmp_path / "images_2").mkdir()
    for i in range(10):  # a copy that differs from an area-average of the originals: grey
        iio.imwrite(tmp_path / "images_2" / f"frame_{i:03d}.png", np.full((H // 2, W // 2, 3), 77, np.uint8))
    s = load(tmp_path, downscale=2)
    assert torch.allclose(s.images, torch.full_like(s.images, 77 / 255)) and s.metadata["image_folder"] == "images_2"
    assert torch.allclose(s.cameras.fx, torch.full((8,), 15.0))
    full = load(tmp_path)  # data.downscale 1 still reads the originals
    assert (full.width, full.height) == (W, H) and full.metadata["image_folder"] is None


def test_max_side_raises_the_downscale_of_large_images(tmp_path):
    """data.max_side caps the longer side (40 here): 20 asks for 1/2, 13 for 1/4 (ceil(40 / 13)); a
    larger data.downscale wins; the size comes from w/h, else from the image file, else from an
    images_N copy."""
    write_capture(tmp_path / "wh", ring())
    s = load(tmp_path / "wh", max_side=20)
    assert (s.width, s.height) == (W // 2, H // 2) and s.metadata["max_side_capped"]
    assert torch.allclose(s.cameras.fx, torch.full((8,), 15.0)) and torch.allclose(s.cameras.cy, torch.full((8,), 7.25))
    assert torch.allclose(s.images, load(tmp_path / "wh", downscale=2).images)
    assert (load(tmp_path / "wh", max_side=13).width, load(tmp_path / "wh", max_side=40).width) == (W // 4, W)
    assert load(tmp_path / "wh", max_side=20, downscale=4).width == W // 4
    write_capture(tmp_path / "file", ring(), top={"fl_x": 30.0})  # no w, h: the file's own size
    assert load(tmp_path / "file", max_side=20).width == W // 2
    write_capture(tmp_path / "copy", ring(), top={"fl_x": 30.0}, folder="images_2", size=(H // 2, W // 2))
    s = load(tmp_path / "copy", max_side=13)  # images_2 is 20 wide, the originals 40: 1/4
    assert (s.width, s.height) == (W // 4, H // 4) and s.metadata["image_folder"] == "images_2"
    assert torch.allclose(s.cameras.fx, torch.full((8,), 7.5))
    s = load(tmp_path / "copy", max_side=30)  # asks for 1/2: images_2 as read without a cap, so not capped
    assert s.width == W // 2 and not s.metadata["max_side_capped"]


def test_mixed_image_sizes(tmp_path):
    """Frames of two sizes are refused naming two files, unless the images_N copies share a size."""
    sizes = lambda i: (H, W) if i % 2 else (H + 1, W + 1)  # noqa: E731
    keys = lambda i: {"w": sizes(i)[1], "h": sizes(i)[0], "cx": sizes(i)[1] / 2}  # noqa: E731
    write_capture(tmp_path / "a", ring(), top={"fl_x": 30.0}, frame_keys=keys, size=sizes)
    with pytest.raises(DatasetError, match=r"frame_002.png: image size 41x31 differs from the split's 40x30 "
                                           r"\(frame_001.png\)") as exc:
        load(tmp_path / "a")
    assert "\n" not in str(exc.value)
    write_capture(tmp_path / "b", ring(), top={"fl_x": 30.0}, frame_keys=keys, folder="images_2",
                  size=(H // 2, W // 2))
    s = load(tmp_path / "b")
    assert (s.width, s.height) == (W // 2, H // 2)
    # each frame's intrinsics follow its own declared size: cx = w / 2 halves
    assert torch.allclose(s.cameras.cx, torch.tensor([sizes(i)[1] / 4 for i in range(1, 10) if i != 8]))


# ---------------------------------------------------------------------------------------- masks

def test_instant_ngp_dynamic_masks_and_nerfstudio_masks(tmp_path):
    write_capture(tmp_path, ring())
    dyn = np.zeros((H, W, 3), np.uint8)
    dyn[:, W // 2:] = (255, 0, 0)  # any non-black pixel is a moving thing: ignored
    iio.imwrite(tmp_path / "images" / "dynamic_mask_frame_001.png", dyn)
    s = load(tmp_path)
    assert s.mask is not None and s.mask.shape == (8, H, W)
    assert torch.all(s.mask[0, :, : W // 2] == 1) and torch.all(s.mask[0, :, W // 2:] == 0)
    assert torch.all(s.mask[1:] == 1)
    # nerfstudio's mask_path (white = use) at full size, images read from images_2: area-halved
    root = write_capture(tmp_path / "ns", ring(), folder="images_2", size=(H // 2, W // 2))
    meta = json.loads((root / "transforms.json").read_text())
    (root / "masks").mkdir()
    keep = np.zeros((H, W), np.uint8)
    keep[: H // 2] = 255
    for fr in meta["frames"]:
        fr["mask_path"] = "masks/" + fr["file_path"].split("/")[-1]
        iio.imwrite(root / fr["mask_path"], keep)
    (root / "transforms.json").write_text(json.dumps(meta))
    s = load(root)
    assert s.mask.shape == (8, H // 2, W // 2)
    assert torch.all(s.mask[:, : H // 4] == 1) and torch.all(s.mask[:, H // 4 + 1:] == 0)


# ---------------------------------------------------------------------------------- content box

def in_box(points, scene):
    """Which world points (m, 3) of the file lie inside the scene's box (after normalising)."""
    p = (torch.as_tensor(points) - torch.tensor(scene.metadata["centre"])) * scene.metadata["scale"]
    return ((p >= scene.bbox[0].double()) & (p <= scene.bbox[1].double())).all(-1)


def test_aabb_key_is_the_content_box(tmp_path):
    box = [[-0.4, -0.3, -0.2], [0.6, 0.3, 0.5]]
    s = load(write_capture(tmp_path / "a", ring(), top={"fl_x": 30.0, "aabb": box}))
    expect = (np.array(box) - np.array(s.metadata["centre"])) * s.metadata["scale"]
    assert np.allclose(s.bbox.numpy(), expect, atol=1e-5) and s.metadata["box_source"] == "aabb"
    # with aabb_scale too: instant-ngp's cube of aabb_scale times the longest side (1.0) around the centre
    s = load(write_capture(tmp_path / "b", ring(), top={"fl_x": 30.0, "aabb": box, "aabb_scale": 2}))
    expect = (np.array([[0.1 - 1, -1, 0.15 - 1], [0.1 + 1, 1, 0.15 + 1]]) - s.metadata["centre"]) * s.metadata["scale"]
    assert np.allclose(s.bbox.numpy(), expect, atol=1e-5)
    write_capture(tmp_path / "c", ring(3), top={"fl_x": 30.0, "aabb": [[0, 0, 0], [1, -1, 1]]})
    with pytest.raises(DatasetError, match="'aabb' must be"):
        load(tmp_path / "c")


def write_ply(path, xyz, binary):
    header = ["ply", "format " + ("binary_little_endian" if binary else "ascii") + " 1.0", "comment test",
              f"element vertex {len(xyz)}", "property double x", "property double y", "property double z",
              "property uchar red", "property uchar green", "property uchar blue", "end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        for p in xyz:
            if binary:
                f.write(struct.pack("<3d3B", *p, 10, 20, 30))
            else:
                f.write(f"{float(p[0])!r} {float(p[1])!r} {float(p[2])!r} 10 20 30\n".encode())


@pytest.mark.parametrize("binary", [False, True])
def test_box_from_the_ply_points(tmp_path, binary):
    xyz = np.random.default_rng(3).uniform([-0.5, -0.2, 0.0], [0.3, 0.4, 0.6], (200, 3))
    root = write_capture(tmp_path, ring(), top={"fl_x": 30.0, "ply_file_path": "sparse_pc.ply"})
    write_ply(root / "sparse_pc.ply", xyz, binary)
    assert np.allclose(read_ply_xyz(root / "sparse_pc.ply"), xyz)
    s = load(root)
    expect = (np.percentile(xyz, [1, 99], axis=0) - s.metadata["centre"]) * s.metadata["scale"]
    assert np.allclose(s.bbox.numpy(), expect, atol=1e-5) and s.metadata["box_source"] == "points"
    (root / "sparse_pc.ply").write_bytes(b"ply\nformat binary_big_endian 1.0\nelement vertex 1\nend_header\n")
    with pytest.raises(DatasetError, match="sparse_pc.ply: PLY format binary_big_endian is not supported"):
        load(root)
    (root / "sparse_pc.ply").unlink()  # named but absent: where the frusta meet
    assert load(root).metadata["box_source"] == "frusta"


def test_ray_bounds_from_the_ply_points_in_view(tmp_path):
    """With a PLY, near and far come from the points each camera sees, as a COLMAP model's do: a
    tight cluster at the ring's centre, sqrt(10) from every camera along its optical axis, gives
    0.9 and 1.1 times that; a point below the ring, in no camera's view, changes nothing."""
    cluster = np.random.default_rng(4).normal(0.0, 1e-3, (300, 3))
    xyz = np.concatenate([cluster, [[0.0, 0.0, -50.0]]])
    root = write_capture(tmp_path, ring(), top={"fl_x": 30.0, "ply_file_path": "sparse_pc.ply"})
    write_ply(root / "sparse_pc.ply", xyz, True)
    s = load(root)
    scale = s.metadata["scale"]
    assert s.near / scale == pytest.approx(0.9 * math.sqrt(10), rel=2e-3)
    assert s.far / scale == pytest.approx(1.1 * math.sqrt(10), rel=2e-3)
    assert load(root, near=0.5).near == 0.5  # data.near still wins


@pytest.mark.parametrize("arc_deg", [360, 90])
def test_box_without_one_in_the_file_holds_the_object(tmp_path, arc_deg):
    """An object (a ball of radius 0.5 off the world origin) filmed from a ring or a 90-degree arc:
    the box from where the frusta meet holds all of it; the old [-1, 1]^3 box around the cameras'
    mean position (after normalising) missed part of it on the arc."""
    centre = np.array([1.0, -2.0, 0.5])
    views = ring(24, radius=3.0, arc=math.radians(arc_deg), centre=centre, height=1.2)
    fov_keys = {"camera_angle_x": 2 * math.atan(0.5 * W / 30.0), "w": W, "h": H}
    s = load(write_capture(tmp_path, views, top=fov_keys))
    assert s.metadata["box_source"] == "frusta"
    g = np.random.default_rng(0).normal(size=(4000, 3))
    ball = centre + 0.5 * g / np.linalg.norm(g, axis=1, keepdims=True) * np.random.default_rng(1).uniform(
        0, 1, (4000, 1)) ** (1 / 3)
    assert bool(in_box(ball, s).all())
    # and the box is about the object, not everything the cameras might see: no larger than the
    # old box, and most cameras stand outside it
    assert (s.bbox[1] - s.bbox[0]).max() < 2.5
    cams = torch.cat([load(tmp_path, "test").cameras.c2w, s.cameras.c2w])[:, :3, 3]
    assert ((cams >= s.bbox[0]) & (cams <= s.bbox[1])).all(-1).double().mean() < 0.5
    if arc_deg == 90:
        p = (torch.as_tensor(ball) - torch.tensor(s.metadata["centre"])) * s.metadata["scale"]
        assert ((p.abs() <= 1).all(-1)).double().mean() < 0.9


# ---------------------------------------------------------------------------------- detection

def test_lone_transforms_train_json_is_a_capture(tmp_path):
    """instant-ngp's scripts may name the file transforms_train.json; without transforms_val.json /
    transforms_test.json beside it, the folder is not Blender's."""
    write_capture(tmp_path, ring(), name="transforms_train.json")
    assert detect_format(tmp_path) == "transforms"
    s = load(tmp_path, "test")
    assert s.image_names == ["frame_000", "frame_008"] and s.metadata["file"] == "transforms_train.json"
    (tmp_path / "transforms_test.json").write_text("{}")
    assert detect_format(tmp_path) == "blender"
