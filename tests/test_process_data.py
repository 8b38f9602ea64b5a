"""process-data end to end on a capture rendered from the built-in scene, poses withheld.

The built-in scene's own textures (stripes, a soft checker) give SIFT only ~60 features per
320x240 view, too few to register; the capture here multiplies the scene's colour by a 3-D
value-noise texture fixed to the surfaces (so it is the same from every view), which gives
several hundred. 36 views circle the scene with a wobble in height and distance.

Checked: every image registers; after a similarity alignment (Umeyama) of the recovered camera
centres to the true ones the median rotation error is under 0.5 degree and the median centre
error under 1% of the cameras' spread; the same for the views written as an mp4 (the video
path); transforms.json round-trips through the project's loader, and the COLMAP loader reads
DIR/sparse/0 to the same cameras; train-scene runs on DIR with no config named; every bad input
is one line on stderr and exit status 2; Ctrl-C stops the run with status 130 and removes DIR.
"""
import json
import math
import os
import signal
import subprocess
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import installed_script, run_cli
from test_captures import assert_same_cameras

from nerf.commands import COMMANDS
from nerf.datasets import load_scene
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import aligned_pose_errors
from nerf.datasets.process_data import focal_from_fov
from nerf.datasets.scene import Cameras
from nerf.datasets.synthetic import FAR, NEAR, shade
from nerf.render.paths import look_at
from nerf.render.rays import image_rays

N_VIEWS, W, H = 36, 320, 240
FOV_DEGREES = 45.0


def ring_cameras(n: int = N_VIEWS) -> Cameras:
    """n cameras circling the scene's centre, 18-42 degrees up and 3.3-3.9 away, looking at it."""
    t = torch.arange(n, dtype=torch.float32) * (2 * math.pi / n)
    el = torch.deg2rad(30 + 12 * torch.sin(2 * t))
    r = 3.6 + 0.3 * torch.cos(3 * t)
    eye = torch.stack([r * torch.cos(el) * torch.cos(t), r * torch.cos(el) * torch.sin(t), r * torch.sin(el)], -1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    f = 0.5 * W / math.tan(math.radians(FOV_DEGREES) / 2)
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(f), fy=full(f), cx=full(W / 2), cy=full(H / 2), width=W, height=H)


def surface_texture(points: torch.Tensor) -> torch.Tensor:
    """A value-noise pattern (n,) in [0.25, 1] fixed to 3-D positions: two octaves of random
    values on 24^3 and 72^3 grids over the scene's box, trilinearly interpolated, contrast raised."""
    g = torch.Generator().manual_seed(0)
    grid = (points / 1.2).clamp(-1, 1).reshape(1, 1, 1, -1, 3)
    v = sum(torch.nn.functional.grid_sample(torch.rand(1, 1, r, r, r, generator=g), grid, align_corners=True).reshape(-1)
            for r in (24, 72)) / 2
    return 0.25 + 0.75 * torch.sigmoid(10 * (v - 0.5))


def render_views(cams: Cameras) -> np.ndarray:
    """(n, H, W, 3) uint8 views of the built-in scene, textured, over white."""
    views = []
    for i in range(len(cams)):
        rays = image_rays(cams, i, NEAR, FAR)
        colour, t = shade(rays.origins, rays.directions)
        hit = torch.isfinite(t)
        p = rays.origins + rays.directions * t.nan_to_num(posinf=0.0)[:, None]
        rgb = torch.where(hit[:, None], colour * surface_texture(p)[:, None], torch.ones(3))
        views.append((rgb.reshape(cams.height, cams.width, 3).clamp(0, 1) * 255 + 0.5).byte().numpy())
    return np.stack(views)


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    """The rendered capture: photos/ (view_000.png ...), views.mp4 and the true cameras."""
    root = tmp_path_factory.mktemp("capture")
    cams = ring_cameras()
    views = render_views(cams)
    (root / "photos").mkdir()
    for i, v in enumerate(views):
        iio.imwrite(root / "photos" / f"view_{i:03d}.png", v)
    iio.imwrite(root / "views.mp4", views, plugin="FFMPEG", fps=10, codec="libx264", quality=None,
                output_params=["-crf", "12"], macro_block_size=16)
    return root, cams


def pose_errors(est: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Median rotation error (degrees) and median centre error (fraction of the true cameras'
    spread) of camera-to-world poses (n, 4, 4) after aligning the centres by a similarity."""
    angle, centre_err = aligned_pose_errors(est, true)
    return float(np.median(angle)), float(np.median(centre_err))


def recovered_poses(out, index_of) -> tuple[np.ndarray, list[int]]:
    """c2w (n, 4, 4) from DIR/transforms.json and the true view index of each frame."""
    meta = json.loads((out / "transforms.json").read_text())
    est = np.array([fr["transform_matrix"] for fr in meta["frames"]])
    idx = [index_of(fr["file_path"].split("/")[-1]) for fr in meta["frames"]]
    return est, idx


def one_line_error(code, err, *needles):
    assert code == 2, err
    assert err.strip() and err.strip().count("\n") == 0, err
    for needle in needles:
        assert needle in err, err


def run_here(capsys, *args):
    """process-data called in-process: (exit code, stderr)."""
    code = COMMANDS["process-data"](list(args))
    return code, capsys.readouterr().err


def test_photos_register_align_and_round_trip(capture, tmp_path, capsys):
    root, cams = capture
    out = tmp_path / "scene"
    r = run_cli("process-data", str(root / "photos"), "--out", str(out), "--quiet", timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "process_report.json").read_text())
    assert report["status"] == "ok" and report["images_given"] == report["images_registered"] == N_VIEWS
    assert report["points3d"] > 500 and report["mean_reprojection_error_px"] < 1.0
    assert set(report["seconds"]) >= {"extract", "match", "map", "write"}
    for k in (1, 2, 4, 8):
        folder = out / ("images" if k == 1 else f"images_{k}")
        assert sorted(p.name for p in folder.iterdir()) == [f"view_{i:03d}.png" for i in range(N_VIEWS)]
        assert iio.improps(folder / "view_000.png").shape[:2] == (H // k, W // k)
    assert (out / "sparse" / "0").is_dir() and (out / "sparse_pc.ply").is_file()

    est, idx = recovered_poses(out, lambda name: int(name[5:8]))
    rot_err, centre_err = pose_errors(est, cams.c2w[idx].double().numpy())
    assert rot_err < 0.5 and centre_err < 0.01, (rot_err, centre_err)

    # the project's loader reads transforms.json to the same cameras: normalised by its centre
    # and scale, intrinsics and lens as written
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV" and (meta["w"], meta["h"]) == (W, H)
    assert meta["ply_file_path"] == "sparse_pc.ply"
    scene = load_scene(DataOptions(path=str(out)), "train")
    assert scene.metadata["format"] == "transforms"
    raw = np.array([meta["frames"][i]["transform_matrix"] for i in scene.metadata["indices"]])
    centre, scale = np.array(scene.metadata["centre"]), scene.metadata["scale"]
    c2w = scene.cameras.c2w.double().numpy()
    assert np.allclose(c2w[:, :3, :3], raw[:, :3, :3], atol=1e-5)
    assert np.allclose(c2w[:, :3, 3], (raw[:, :3, 3] - centre) * scale, atol=1e-5)
    assert torch.allclose(scene.cameras.fx, torch.full((len(scene),), meta["fl_x"], dtype=torch.float32))
    assert torch.allclose(scene.cameras.cy, torch.full((len(scene),), meta["cy"], dtype=torch.float32))
    lens = [meta[k] for k in ("k1", "k2", "p1", "p2")]
    assert scene.cameras.distortion is not None
    assert torch.allclose(scene.cameras.distortion[0, :4], torch.tensor(lens, dtype=torch.float32), atol=1e-7)
    # ... and the COLMAP loader reads sparse/0 to the same cameras
    for split in ("train", "test"):
        a = load_scene(DataOptions(path=str(out)), split)
        b = load_scene(DataOptions(path=str(out), format="colmap"), split)
        assert a.image_names == b.image_names
        assert_same_cameras(a.cameras, b.cameras)

    # train-scene takes DIR with no config named (2 steps, a quarter of the size)
    run = tmp_path / "run"
    code = COMMANDS["train-scene"](["--data", str(out), "--out", str(run), "--no-eval", "--quiet", "data.downscale=4",
                                    "train.max_steps=2", "train.eval_every=0", "train.threads=1"])
    assert code == 0, capsys.readouterr().err
    assert (run / "config.yaml").is_file()


FISHEYE_FOV = 120.0  # degrees across the width
FISHEYE_LENS = (0.03, -0.01, 0.0, 0.0)  # OpenCV fisheye k1-k4
FISHEYE_W, FISHEYE_H = 480, 360
FISHEYE_DISTANCE = 0.5  # of the ring's: close enough that the scene fills the middle of the view


def fisheye_cameras(n: int = N_VIEWS) -> Cameras:
    """The ring of `ring_cameras` at half its distance, seen through an equidistant fisheye
    (OpenCV's model: k1-k4) with a 120-degree horizontal field of view (about 150 across the
    diagonal)."""
    ring = ring_cameras(n)
    c2w = ring.c2w.clone()
    c2w[:, :3, 3] *= FISHEYE_DISTANCE
    f = focal_from_fov(FISHEYE_FOV, FISHEYE_W, fisheye=True)
    k1, k2, k3, k4 = FISHEYE_LENS
    lens = torch.tensor([k1, k2, 0.0, 0.0, k3, k4, 1.0]).expand(n, 7).contiguous()
    full = lambda v: torch.full((n,), float(v))  # noqa: E731
    return Cameras(c2w=c2w, fx=full(f), fy=full(f), cx=full(FISHEYE_W / 2), cy=full(FISHEYE_H / 2),
                   width=FISHEYE_W, height=FISHEYE_H, distortion=lens)


def test_fisheye_photos_register_with_a_field_of_view_prior(tmp_path, capsys):
    """PNG renders through a fisheye carry no EXIF focal length; with --fov (the lens's field of
    view, a prior on the focal length) OPENCV_FISHEYE registers every view, the poses align as
    tightly as the perspective capture's, the lens comes back close to the true one, and the
    project's loader reads the written fisheye transforms.json to the same cameras."""
    cams = fisheye_cameras()
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, v in enumerate(render_views(cams)):
        iio.imwrite(photos / f"view_{i:03d}.png", v)
    out = tmp_path / "scene"
    code, err = run_here(capsys, str(photos), "--out", str(out), "--camera-model", "OPENCV_FISHEYE",
                         "--fov", "110", "--quiet")  # a rough prior: the lens's true field of view is 120
    assert code == 0, err
    report = json.loads((out / "process_report.json").read_text())
    assert report["images_registered"] == N_VIEWS and report["fov_prior_degrees"] == 110
    est, idx = recovered_poses(out, lambda name: int(name[5:8]))
    rot_err, centre_err = pose_errors(est, cams.c2w[idx].double().numpy())
    assert rot_err < 0.5 and centre_err < 0.01, (rot_err, centre_err)
    meta = json.loads((out / "transforms.json").read_text())
    assert meta["camera_model"] == "OPENCV_FISHEYE"
    assert meta["fl_x"] == pytest.approx(float(cams.fx[0]), rel=0.005)
    scene = load_scene(DataOptions(path=str(out)), "train")
    lens = scene.cameras.distortion[0]
    assert float(lens[6]) == 1.0  # read as a fisheye
    assert torch.allclose(lens[[0, 1, 4, 5]], torch.tensor([meta[k] for k in ("k1", "k2", "k3", "k4")]), atol=1e-6)
    # the recovered lens bends rays as the true one does where the photos show the scene (the
    # middle; the white margins constrain nothing): a pixel's angle off the axis within 0.3 degree
    from nerf.render.rays import rays_from_pixels

    def angle(c, dx, dy):
        x, y = torch.tensor([FISHEYE_W / 2 + dx]), torch.tensor([FISHEYE_H / 2 + dy])
        d = rays_from_pixels(c, torch.zeros(1, dtype=torch.long), x, y, 0.1, 1.0).directions[0]
        return math.degrees(math.acos(float(-(c.c2w[0, :3, :3].T @ d)[2])))

    for dx, dy in ((120.0, 0.0), (0.0, -90.0), (80.0, 80.0)):
        assert angle(scene.cameras, dx, dy) == pytest.approx(angle(cams, dx, dy), abs=0.3), (dx, dy)
    one_line_error(*run_here(capsys, str(photos), "--out", str(tmp_path / "x"), "--fov", "200"), "--fov")


def test_video_frames_register_and_align(capture, tmp_path):
    root, cams = capture
    out = tmp_path / "scene"
    r = run_cli("process-data", str(root / "views.mp4"), "--out", str(out), "--frames", str(N_VIEWS), "--quiet",
                timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "process_report.json").read_text())
    assert report["input_kind"] == "video" and report["matching"] == "sequential"
    assert report["video"]["frames_kept"] == report["images_registered"] == N_VIEWS
    index = {k["file"]: k["index"] for k in report["video"]["kept"]}
    assert sorted(index) == [f"frame_{i:05d}.jpg" for i in range(1, N_VIEWS + 1)]
    est, idx = recovered_poses(out, index.__getitem__)
    rot_err, centre_err = pose_errors(est, cams.c2w[idx].double().numpy())
    assert rot_err < 0.5 and centre_err < 0.01, (rot_err, centre_err)


def test_video_keeps_the_sharpest_frame_of_each_window(tmp_path):
    """6 frames in 2 windows of 3; a blurred frame loses to its sharp neighbours."""
    from nerf.datasets.video_frames import pick_frames

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = ((sharp.astype(np.float32) + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, 1, (0, 1))) / 4)
    frames = [blurred, sharp, blurred, blurred, blurred, sharp]
    iio.imwrite(tmp_path / "v.mp4", np.stack(frames).astype(np.uint8), plugin="FFMPEG", fps=6, codec="libx264",
                quality=None, output_params=["-crf", "0"], macro_block_size=16)
    kept, info = pick_frames(tmp_path / "v.mp4", tmp_path / "out", 2)
    assert info["n_decoded"] == 6 and [k.index for k in kept] == [1, 5]
    assert [k.name for k in kept] == ["frame_00001.jpg", "frame_00002.jpg"]


def test_bad_inputs_are_one_line_and_exit_2(capture, tmp_path, capsys):
    root, _ = capture
    photos = sorted((root / "photos").iterdir())

    empty = tmp_path / "empty"
    empty.mkdir()
    one_line_error(*run_here(capsys, str(empty), "--out", str(tmp_path / "o1")), "no images")
    two = tmp_path / "two"
    two.mkdir()
    for p in photos[:2]:
        (two / p.name).write_bytes(p.read_bytes())
    one_line_error(*run_here(capsys, str(two), "--out", str(tmp_path / "o2")), "2 images", "at least 3")
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    for p in photos[:3]:
        (sizes / p.name).write_bytes(p.read_bytes())
    iio.imwrite(sizes / "view_003.png", np.zeros((H // 2, W // 2, 3), dtype=np.uint8))
    one_line_error(*run_here(capsys, str(sizes), "--out", str(tmp_path / "o3")), "view_003.png is 160x120",
                   "--camera-per-image")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is no video")
    one_line_error(*run_here(capsys, str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "o4")),
                   "cannot read as a video")
    one_line_error(*run_here(capsys, str(tmp_path / "missing"), "--out", str(tmp_path / "o5")), "not found")
    one_line_error(*run_here(capsys, str(two), "--out", str(tmp_path / "o6"), "--frames", "10"), "--frames")
    one_line_error(*run_here(capsys, str(root / "photos"), "--out", str(root)), "outside the input")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    one_line_error(*run_here(capsys, str(two), "--out", str(existing)), "already exists", "--overwrite")
    assert (existing / "keep.txt").read_text() == "mine"
    with pytest.raises(SystemExit) as exc:  # argparse: --out missing
        COMMANDS["process-data"]([str(empty)])
    one_line_error(exc.value.code, capsys.readouterr().err, "--out")
    assert not any((tmp_path / f"o{k}").exists() for k in range(1, 7))

    # too few registered: 4 unrelated noise images; the partial report stays (through the installed script)
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(0)
    for k in range(4):
        iio.imwrite(noise / f"n{k}.png", rng.integers(0, 256, (96, 128, 3), dtype=np.uint8))
    out = tmp_path / "o7"
    r = run_cli("process-data", str(noise), "--out", str(out), "--quiet", timeout=300)
    one_line_error(r.returncode, r.stderr, "of 4 images registered", "--matching sequential")
    report = json.loads((out / "process_report.json").read_text())
    assert report["status"] == "too few registered" and report["images_given"] == 4
    assert report["images_registered"] < 3 and not (out / "transforms.json").exists()


def test_ctrl_c_stops_cleanly(capture, tmp_path):
    root, _ = capture
    out = tmp_path / "scene"
    proc = subprocess.Popen([str(installed_script("process-data")), str(root / "photos"), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    deadline = time.time() + 120
    while not (out / ".colmap" / "database.db").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # inside feature extraction
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert err.strip() == "process-data: interrupted"
    assert not out.exists()
