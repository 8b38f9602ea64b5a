"""transforms.json (Instant-NGP / nerfstudio) and COLMAP loaders.

The test writes one small capture three ways (a COLMAP model in .bin, in .txt, and a
transforms.json) for the same cameras, with its own writers, and checks they load to the same
cameras; plus splits, masks, aabb_scale, distortion and the errors for bad input.
"""
import json
import math
import struct
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from nerf.datasets import DatasetError, load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.registry import detect_format

W, H = 20, 16
N_VIEWS = 10
MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4}
FISHEYE_IDS = {"OPENCV_FISHEYE": 5, "SIMPLE_RADIAL_FISHEYE": 8, "RADIAL_FISHEYE": 9}


def look_at_gl(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)):
    eye, target, up = map(lambda v: np.asarray(v, dtype=np.float64), (eye, target, up))
    back = eye - target
    back /= np.linalg.norm(back)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(back, right), back, eye
    return c2w


def rotmat_to_qvec(r):
    """3x3 rotation -> unit quaternion (w, x, y, z), w >= 0."""
    w = math.sqrt(max(0.0, 1 + r[0, 0] + r[1, 1] + r[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + r[0, 0] - r[1, 1] - r[2, 2])) / 2, r[2, 1] - r[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] + r[1, 1] - r[2, 2])) / 2, r[0, 2] - r[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - r[0, 0] - r[1, 1] + r[2, 2])) / 2, r[1, 0] - r[0, 1])
    return np.array([w, x, y, z])


def make_capture():
    """Cameras on a ring of radius 3 around the origin (OpenGL c2w), two intrinsics, points."""
    rng = np.random.default_rng(0)
    views = []
    for i in range(N_VIEWS):
        a = 2 * math.pi * i / N_VIEWS
        views.append(look_at_gl([3 * math.cos(a), 3 * math.sin(a), 1.0 + 0.2 * math.sin(3 * a)],
                                target=rng.normal(0, 0.05, 3)))
    points = rng.uniform(-0.5, 0.5, (50, 3))
    return views, points


def intrinsics_for(model):
    """(COLMAP params, transforms.json keys) describing the same camera."""
    if model == "SIMPLE_PINHOLE":
        return [18.0, 10.0, 8.0], {"fl_x": 18.0, "fl_y": 18.0, "cx": 10.0, "cy": 8.0}
    if model == "PINHOLE":
        return [18.0, 19.5, 10.2, 7.9], {"fl_x": 18.0, "fl_y": 19.5, "cx": 10.2, "cy": 7.9}
    if model == "SIMPLE_RADIAL":
        return [18.0, 10.0, 8.0, -0.1], {"fl_x": 18.0, "fl_y": 18.0, "cx": 10.0, "cy": 8.0, "k1": -0.1}
    if model == "RADIAL":
        return [18.0, 10.0, 8.0, -0.1, 0.02], {"fl_x": 18.0, "fl_y": 18.0, "cx": 10.0, "cy": 8.0, "k1": -0.1,
                                               "k2": 0.02}
    return ([18.0, 19.5, 10.2, 7.9, -0.1, 0.02, 0.001, -0.002],
            {"fl_x": 18.0, "fl_y": 19.5, "cx": 10.2, "cy": 7.9, "k1": -0.1, "k2": 0.02, "p1": 0.001, "p2": -0.002})


def write_images(root, n):
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    names = []
    for i in range(n):
        name = f"frame_{i:03d}.png"
        iio.imwrite(root / "images" / name, rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        names.append(name)
    return names


def write_colmap(root, views, points, cameras, ext, sub="sparse/0"):
    """cameras: list of (model, params) for camera ids 1..; view i uses camera 1 + i % len(cameras)."""
    d = root / sub
    d.mkdir(parents=True, exist_ok=True)
    names = write_images(root, len(views))
    imgs = []
    for i, c2w in enumerate(views):
        c2w_cv = c2w @ np.diag([1.0, -1.0, -1.0, 1.0])
        w2c = np.linalg.inv(c2w_cv)
        imgs.append((i + 1, rotmat_to_qvec(w2c[:3, :3]), w2c[:3, 3], 1 + i % len(cameras), names[i]))
    if ext == "bin":
        with open(d / "cameras.bin", "wb") as f:
            f.write(struct.pack("<Q", len(cameras)))
            for cid, (model, params) in enumerate(cameras, 1):
                f.write(struct.pack("<iiQQ", cid, {**MODEL_IDS, **FISHEYE_IDS}[model], W, H))
                f.write(struct.pack(f"<{len(params)}d", *params))
        with open(d / "images.bin", "wb") as f:
            f.write(struct.pack("<Q", len(imgs)))
            for iid, q, t, cid, name in imgs:
                f.write(struct.pack("<i4d3di", iid, *q, *t, cid))
                f.write(name.encode() + b"\0")
                f.write(struct.pack("<Q", len(points)))
                for k in range(len(points)):
                    f.write(struct.pack("<ddq", 1.0, 2.0, k + 1))
        with open(d / "points3D.bin", "wb") as f:
            f.write(struct.pack("<Q", len(points)))
            for k, p in enumerate(points):
                f.write(struct.pack("<Q3d3BdQ", k + 1, *p, 128, 128, 128, 0.5, len(imgs)))
                for iid, *_ in imgs:
                    f.write(struct.pack("<ii", iid, k))
    else:
        lines = ["# Camera list with one line of data per camera:"]
        lines += [f"{cid} {model} {W} {H} " + " ".join(repr(p) for p in params)
                  for cid, (model, params) in enumerate(cameras, 1)]
        (d / "cameras.txt").write_text("\n".join(lines) + "\n")
        lines = ["# Image list with two lines of data per image:"]
        for iid, q, t, cid, name in imgs:
            lines.append(f"{iid} " + " ".join(repr(float(v)) for v in (*q, *t)) + f" {cid} {name}")
            lines.append(" ".join(f"1.0 2.0 {k + 1}" for k in range(len(points))))
        (d / "images.txt").write_text("\n".join(lines) + "\n")
        lines = ["# 3D point list"]
        for k, p in enumerate(points):
            track = " ".join(f"{iid} {k}" for iid, *_ in imgs)
            lines.append(f"{k + 1} " + " ".join(repr(float(v)) for v in p) + f" 128 128 128 0.5 {track}")
        (d / "points3D.txt").write_text("\n".join(lines) + "\n")


def write_transforms(root, views, cameras, extra=None, per_frame=True):
    names = write_images(root, len(views))
    frames = []
    for i, c2w in enumerate(views):
        fr = {"file_path": f"images/{names[i]}", "transform_matrix": c2w.tolist()}
        if per_frame:
            fr.update(intrinsics_for(cameras[i % len(cameras)][0])[1], w=W, h=H)
        frames.append(fr)
    meta = {"frames": frames}
    meta.update(extra or {})
    (root / "transforms.json").write_text(json.dumps(meta))


def assert_same_cameras(a, b):
    assert a.width == b.width and a.height == b.height
    for k in ("c2w", "fx", "fy", "cx", "cy"):
        assert torch.allclose(getattr(a, k), getattr(b, k), atol=1e-5), k
    if a.distortion is None or b.distortion is None:
        assert a.distortion is None and b.distortion is None
    else:
        assert torch.allclose(a.distortion, b.distortion, atol=1e-7)


@pytest.mark.parametrize("model", list(MODEL_IDS))
def test_colmap_bin_and_txt_load_the_cameras_of_transforms_json(tmp_path, model):
    views, points = make_capture()
    cameras = [(model, intrinsics_for(model)[0]), ("PINHOLE", intrinsics_for("PINHOLE")[0])]
    write_colmap(tmp_path / "bin", views, points, cameras, "bin")
    write_colmap(tmp_path / "txt", views, points, cameras, "txt")
    write_transforms(tmp_path / "ngp", views, cameras)
    assert detect_format(tmp_path / "bin") == "colmap"
    assert detect_format(tmp_path / "ngp") == "transforms"
    for split in ("train", "test"):
        scenes = [load_scene(DataOptions(path=str(tmp_path / k)), split) for k in ("bin", "txt", "ngp")]
        assert_same_cameras(scenes[0].cameras, scenes[1].cameras)
        assert_same_cameras(scenes[0].cameras, scenes[2].cameras)
        assert scenes[0].near == pytest.approx(scenes[1].near)
        for s in scenes:
            assert s.alpha is None and torch.equal(s.background, torch.zeros(3))
            assert torch.equal(s.images, scenes[0].images)
    # every 8th frame held out: 0 and 8 of 10
    test = load_scene(DataOptions(path=str(tmp_path / "bin")), "test")
    assert test.image_names == ["frame_000", "frame_008"]
    assert len(load_scene(DataOptions(path=str(tmp_path / "bin")), "train")) == 8


def test_poses_are_centred_scaled_and_in_opengl_convention(tmp_path):
    views, points = make_capture()
    write_colmap(tmp_path, views, points, [("PINHOLE", intrinsics_for("PINHOLE")[0])], "bin")
    opts = DataOptions(path=str(tmp_path), holdout_every=100)
    train, test = load_scene(opts, "train"), load_scene(opts, "test")
    c2w = torch.cat([test.cameras.c2w, train.cameras.c2w])
    pos = c2w[:, :3, 3]
    assert torch.allclose(pos.mean(0), torch.zeros(3), atol=1e-5)
    assert pos.norm(dim=-1).max() == pytest.approx(1.0, abs=1e-5)
    # the cameras look (down their -z) at the centre of the ring, which the scaling put near the origin
    centre = -torch.tensor(train.metadata["centre"]) * train.metadata["scale"]
    to_centre = torch.nn.functional.normalize(centre - pos, dim=-1)
    assert torch.all((to_centre * -c2w[:, :3, 2]).sum(-1) > 0.99)
    # and their up vectors point up (+z in the written world)
    assert torch.all(c2w[:, 2, 1] > 0.9)
    # near/far from the points' depths: the points sit in a cube of side 1 around the centre,
    # cameras ~3.16 away before scaling
    scale = train.metadata["scale"]
    assert 0.9 * (3.16 - 0.87) * scale * 0.95 < train.near < 3.16 * scale
    assert 3.16 * scale < train.far < 1.1 * (3.17 + 0.87) * scale * 1.05


def test_transforms_json_global_intrinsics_angle_aabb_and_named_split(tmp_path):
    views, _ = make_capture()
    fov = 2 * math.atan(W / 2 / 18.0)
    write_transforms(tmp_path, views, [], per_frame=False, extra={
        "camera_angle_x": fov, "aabb_scale": 4,
        "train_filenames": [f"images/frame_{i:03d}.png" for i in range(1, 7)],
        "test_filenames": ["./images/frame_000.png", "images/frame_009.png"],
    })
    train = load_scene(DataOptions(path=str(tmp_path)), "train")
    test = load_scene(DataOptions(path=str(tmp_path)), "test")
    val = load_scene(DataOptions(path=str(tmp_path)), "val")
    assert len(train) == 6 and test.image_names == ["frame_000", "frame_009"] == val.image_names
    assert torch.allclose(train.cameras.fx, torch.full((6,), 18.0)) and torch.equal(train.cameras.fx, train.cameras.fy)
    assert torch.allclose(train.cameras.cx, torch.full((6,), W / 2)) and train.cameras.distortion is None
    # aabb_scale 4 with the default scale 0.33 / offset 0.5: half-size 2 / 0.33 in the file's
    # world, then normalised with the cameras
    scale = train.metadata["scale"]
    centre = np.array(train.metadata["centre"])
    expect = (np.array([[-2.0 / 0.33] * 3, [2.0 / 0.33] * 3]) - centre) * scale
    assert np.allclose(train.bbox.numpy(), expect, atol=1e-4)
    assert train.far > (2.0 / 0.33) * scale  # the far corner of the box is reachable


def test_transforms_json_downscale_masks_and_rgba(tmp_path):
    views, _ = make_capture()
    cams = [("OPENCV", intrinsics_for("OPENCV")[0])]
    write_transforms(tmp_path, views, cams)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    (tmp_path / "masks").mkdir()
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[:, : W // 2] = 255
    for fr in meta["frames"]:
        name = Path(fr["file_path"]).name
        fr["mask_path"] = f"masks/{name}"
        iio.imwrite(tmp_path / "masks" / name, mask)
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    iio.imwrite(tmp_path / "images" / "frame_001.png", rgba)  # one RGBA image among RGB ones
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    s = load_scene(DataOptions(path=str(tmp_path), downscale=2, background="white"), "train")
    assert (s.width, s.height) == (W // 2, H // 2)
    assert torch.allclose(s.cameras.fx, torch.full((len(s),), 9.0))
    assert torch.allclose(s.cameras.cx, torch.full((len(s),), 5.1))
    assert s.cameras.distortion is not None and s.cameras.distortion.shape == (len(s), 4)
    assert s.mask is not None and s.mask.shape == (len(s), H // 2, W // 2)
    assert torch.all(s.mask[:, :, : W // 4] == 1) and torch.all(s.mask[:, :, W // 4:] == 0)
    # frame_001 is the first training frame: half-transparent red over white
    assert s.alpha is not None
    assert torch.allclose(s.images[0, 0, 0], torch.tensor([1.0, 0.5, 0.5]), atol=0.01)
    # training draws only the pixels the masks keep (the left half), from every image
    from nerf.training.trainer import masked_pixels, sample_batch

    valid = masked_pixels(s.mask)
    assert valid.numel() == len(s) * (H // 2) * (W // 4)
    cam, x, y, target = sample_batch(s.images, 5000, torch.Generator().manual_seed(0), 1.0, valid)
    assert (x < W // 4).all() and set(cam.tolist()) == set(range(len(s)))
    assert torch.equal(target, s.images[cam, (y - 0.5).long(), (x - 0.5).long()])
    assert masked_pixels(torch.ones(2, 3, 4)) is None


def test_colmap_max_side_raises_the_downscale(tmp_path):
    """The longer side of the model's cameras (20) over data.max_side sets the factor: 10 -> 1/2,
    with the images area-averaged and the intrinsics halved; 0 keeps data.downscale."""
    views, points = make_capture()
    write_colmap(tmp_path, views, points, [("PINHOLE", intrinsics_for("PINHOLE")[0])], "bin")
    full = load_scene(DataOptions(path=str(tmp_path)), "train")
    s = load_scene(DataOptions(path=str(tmp_path), max_side=10), "train")
    assert (s.width, s.height) == (W // 2, H // 2) and s.metadata["max_side_capped"]
    assert torch.allclose(s.cameras.fx, full.cameras.fx / 2) and torch.allclose(s.cameras.cy, full.cameras.cy / 2)
    assert torch.allclose(s.images, full.images.reshape(len(s), H // 2, 2, W // 2, 2, 3).mean((2, 4)))
    s = load_scene(DataOptions(path=str(tmp_path), max_side=0), "train")
    assert s.width == W and not s.metadata["max_side_capped"]


def test_errors_name_the_file_and_problem(tmp_path):
    with pytest.raises(DatasetError, match="no known dataset format.*transforms.json.*cameras.bin.*poses_bounds.npy"):
        load_scene(DataOptions(path=str(tmp_path)), "train")
    views, points = make_capture()
    write_colmap(tmp_path / "fish", views, points, [("PINHOLE", [18.0, 18.0, 10.0, 8.0])], "txt")
    txt = tmp_path / "fish" / "sparse" / "0" / "cameras.txt"
    txt.write_text(txt.read_text().replace("PINHOLE 20 16 18.0 18.0 10.0 8.0", "FOV 20 16 18 18 10 8 0.5"))
    with pytest.raises(DatasetError, match="cameras.txt: camera 1 uses the FOV model"):
        load_scene(DataOptions(path=str(tmp_path / "fish")), "train")
    write_colmap(tmp_path / "trunc", views, points, [("PINHOLE", [18.0, 18.0, 10.0, 8.0])], "bin")
    b = tmp_path / "trunc" / "sparse" / "0" / "images.bin"
    b.write_bytes(b.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"sparse/0: cannot read the COLMAP model in \.bin \(a corrupt or unfinished model"):
        load_scene(DataOptions(path=str(tmp_path / "trunc")), "train")
    write_transforms(tmp_path / "nofocal", views, [], per_frame=False)
    with pytest.raises(DatasetError, match="transforms.json: frame 0 has no focal length"):
        load_scene(DataOptions(path=str(tmp_path / "nofocal")), "train")
    write_transforms(tmp_path / "k4", views, [], per_frame=False, extra={"fl_x": 18.0, "k4": 0.1})
    with pytest.raises(DatasetError, match="'k4' = 0.1 is not supported on a perspective camera"):
        load_scene(DataOptions(path=str(tmp_path / "k4")), "train")
    # an explicit data.format wins over detection (and fails clearly when it does not fit)
    with pytest.raises(DatasetError, match="no COLMAP model"):
        load_scene(DataOptions(path=str(tmp_path / "k4"), format="colmap"), "train")


def test_colmap_txt_without_points_lines(tmp_path):
    """Some exporters write images.txt with one line per image (no POINTS2D line) and no points."""
    views, points = make_capture()
    cams = [("PINHOLE", intrinsics_for("PINHOLE")[0])]
    write_colmap(tmp_path / "a", views, points, cams, "txt")
    write_colmap(tmp_path / "b", views, points, cams, "txt")
    txt = tmp_path / "b" / "sparse" / "0" / "images.txt"
    txt.write_text("\n".join(ln for ln in txt.read_text().splitlines() if not ln.startswith("1.0 2.0")) + "\n")
    (tmp_path / "b" / "sparse" / "0" / "points3D.txt").unlink()
    a, b = (load_scene(DataOptions(path=str(tmp_path / k)), "train") for k in "ab")
    assert_same_cameras(a.cameras, b.cameras)
    assert b.metadata["n_points"] == 0 and 0 < b.near < b.far


@pytest.mark.parametrize("model, params", [
    ("OPENCV_FISHEYE", [18.0, 19.5, 10.2, 7.9, 0.1, -0.02, 0.01, -0.003]),
    ("SIMPLE_RADIAL_FISHEYE", [18.0, 10.0, 8.0, 0.08]),
    ("RADIAL_FISHEYE", [18.0, 10.0, 8.0, 0.08, -0.01]),
])
@pytest.mark.parametrize("ext", ["bin", "txt"])
def test_colmap_fisheye_rays_match_colmaps_own_camera(tmp_path, model, params, ext):
    """Every pixel's ray from a fisheye COLMAP camera agrees with pycolmap's own unprojection."""
    import pycolmap

    from nerf.render.distortion import camera_directions

    views, points = make_capture()
    write_colmap(tmp_path, views, points, [(model, params)], ext)
    cams = load_scene(DataOptions(path=str(tmp_path), holdout_every=100), "train").cameras
    y, x = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    x, y = x.reshape(-1).double(), y.reshape(-1).double()
    d = camera_directions(x, y, cams.fx[0].double(), cams.fy[0].double(), cams.cx[0].double(), cams.cy[0].double(),
                          cams.distortion[0].double())
    ours = torch.stack([d[:, 0] / -d[:, 2], -d[:, 1] / -d[:, 2]], -1)
    ref = pycolmap.Camera(model=model, width=W, height=H, params=params).cam_from_img(
        torch.stack([x, y], -1).numpy())
    assert float((ours - torch.from_numpy(np.asarray(ref))).abs().max()) < 1e-6
