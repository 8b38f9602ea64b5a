"""process-data end to end on a capture rendered from the built-in scene, poses withheld.

The capture (`nerf.datasets.rendered_capture`): 36 views of the built-in scene, textured for
SIFT, circling it with a wobble in height and distance; a second one through a fisheye lens.

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
from dataclasses import replace

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
from nerf.datasets.rendered_capture import HEIGHT, N_VIEWS, WIDTH, fisheye_cameras, render_views, ring_cameras
from nerf.datasets.sfm_focal import KEEP_GAIN

W, H = WIDTH, HEIGHT


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
    (out / "images").mkdir(parents=True)
    (out / "images" / "stale.png").write_bytes(b"left from an earlier run")  # --overwrite replaces DIR whole
    r = run_cli("process-data", str(root / "photos"), "--out", str(out), "--quiet", "--overwrite", timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "process_report.json").read_text())
    assert report["status"] == "ok" and report["images_given"] == report["images_registered"] == N_VIEWS
    assert report["points3d"] > 500 and report["mean_reprojection_error_px"] < 1.0
    assert report["folded_pairs"] == 0 and "remap" not in report, report  # a sound model is left alone
    # photos of one lens: a focal length per photo is tried and barely helps, so one camera is kept
    focal = report["focal_per_image"]
    assert focal["mode"] == "auto" and not focal["kept"], focal
    assert focal["reprojection_error_after_px"] > (1 - KEEP_GAIN) * focal["reprojection_error_before_px"], focal
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
        # both give the model's keypoints as sparse depth (transforms.json from the model beside it)
        assert a.sparse_depth is not None and a.sparse_depth.shape[0] > 150 * len(a)
        assert torch.allclose(a.sparse_depth, b.sparse_depth, atol=1e-5)

    # train-scene takes DIR with no config named (2 steps, a quarter of the size)
    run = tmp_path / "run"
    code = COMMANDS["train-scene"](["--data", str(out), "--out", str(run), "--no-eval", "--quiet", "data.downscale=4",
                                    "train.max_steps=2", "train.eval_every=0", "train.threads=1"])
    assert code == 0, capsys.readouterr().err
    assert (run / "config.yaml").is_file()


def test_fisheye_photos_register_with_a_field_of_view_prior(tmp_path, capsys):
    """PNG renders through a fisheye carry no EXIF focal length; with --fov (the lens's field of
    view, a prior on the focal length) OPENCV_FISHEYE registers every view, the poses align as
    tightly as the perspective capture's, the lens comes back close to the true one, and the
    project's loaders read the written fisheye transforms.json and sparse/0 to the same cameras."""
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
        x, y = torch.tensor([cams.width / 2 + dx]), torch.tensor([cams.height / 2 + dy])
        d = rays_from_pixels(c, torch.zeros(1, dtype=torch.long), x, y, 0.1, 1.0).directions[0]
        return math.degrees(math.acos(float(-(c.c2w[0, :3, :3].T @ d)[2])))

    for dx, dy in ((120.0, 0.0), (0.0, -90.0), (80.0, 80.0)):
        assert angle(scene.cameras, dx, dy) == pytest.approx(angle(cams, dx, dy), abs=0.3), (dx, dy)
    # the COLMAP loader reads DIR/sparse/0 to the same fisheye cameras
    assert_same_cameras(load_scene(DataOptions(path=str(out), format="colmap"), "train").cameras, scene.cameras)
    one_line_error(*run_here(capsys, str(photos), "--out", str(tmp_path / "x"), "--fov", "200"), "--fov")


def test_focal_per_image_recovers_a_zoomed_run_of_photos(capture, tmp_path, capsys):
    """A third of the views (a contiguous run, as when a phone switches lens or zoom) taken with a
    focal length 8% longer: process-data maps with one shared camera, then refines a focal length
    per photo, and keeps it with no flag asked because the reprojection error falls by more than
    KEEP_GAIN: the written frames' fl_x show the run's 8% and each is within 4% of its view's; the
    poses align as tightly as the one-camera capture's."""
    _, cams = capture
    zoomed = torch.zeros(N_VIEWS, dtype=torch.bool)
    zoomed[N_VIEWS // 3: 2 * N_VIEWS // 3] = True
    scale = torch.where(zoomed, 1.08, 1.0)
    cams = replace(cams, fx=cams.fx * scale, fy=cams.fy * scale)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, v in enumerate(render_views(cams)):
        iio.imwrite(photos / f"view_{i:03d}.png", v)
    out = tmp_path / "scene"
    code, err = run_here(capsys, str(photos), "--out", str(out), "--quiet")
    assert code == 0, err
    report = json.loads((out / "process_report.json").read_text())
    f = report["focal_per_image"]
    assert report["images_registered"] == N_VIEWS and f["mode"] == "auto" and f["kept"], report
    assert f["reprojection_error_after_px"] <= (1 - KEEP_GAIN) * f["reprojection_error_before_px"], f
    meta = json.loads((out / "transforms.json").read_text())
    est, idx = recovered_poses(out, lambda name: int(name[5:8]))
    rot_err, centre_err = pose_errors(est, cams.c2w[idx].double().numpy())
    assert rot_err < 0.5 and centre_err < 0.01, (rot_err, centre_err)
    got = np.array([fr["fl_x"] for fr in meta["frames"]])
    want = cams.fx[idx].double().numpy()
    # one photo's focal length trades off against its distance to the scene, so each is found to
    # a few percent; the zoomed run as a whole stands out from the rest by its true 8%
    assert np.abs(got / want - 1).max() < 0.04, np.round(got / want, 4)
    run = zoomed[idx].numpy()
    assert np.median(got[run]) / np.median(got[~run]) == pytest.approx(1.08, abs=0.01), np.round(got / want, 4)
    scene = load_scene(DataOptions(path=str(out)), "train")  # per-frame intrinsics read
    stems = [fr["file_path"].split("/")[-1].split(".")[0] for fr in meta["frames"]]
    order = [stems.index(n.split("/")[-1].split(".")[0]) for n in scene.image_names]
    assert torch.allclose(scene.cameras.fx.double(), torch.from_numpy(got[order]), rtol=1e-5)
    one_line_error(*run_here(capsys, str(photos), "--out", str(tmp_path / "x"), "--focal-per-image",
                             "--camera-per-image"), "--focal-per-image")
    r = run_cli("process-data", str(photos), "--out", str(tmp_path / "x"), "--focal-per-image", "--one-focal")
    one_line_error(r.returncode, r.stderr, "--one-focal")
    # --one-focal: the same photos keep one shared camera, the per-photo fit not even tried
    one = tmp_path / "one"
    code, err = run_here(capsys, str(photos), "--out", str(one), "--one-focal", "--quiet")
    assert code == 0, err
    assert json.loads((one / "process_report.json").read_text())["focal_per_image"] == {"mode": "off", "kept": False}
    meta = json.loads((one / "transforms.json").read_text())
    assert "fl_x" in meta and not any("fl_x" in fr for fr in meta["frames"]), meta["frames"][0]


def test_video_frames_register_and_align(capture, tmp_path):
    root, cams = capture
    out = tmp_path / "scene"
    r = run_cli("process-data", str(root / "views.mp4"), "--out", str(out), "--frames", str(N_VIEWS), "--quiet",
                timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads((out / "process_report.json").read_text())
    assert report["input_kind"] == "video" and report["matching"] == "sequential"
    assert report["focal_per_image"] == {"mode": "auto", "kept": False}, report  # one video, one zoom
    assert report["video"]["frames_kept"] == report["images_registered"] == N_VIEWS
    index = {k["file"]: k["index"] for k in report["video"]["kept"]}
    assert sorted(index) == [f"frame_{i:05d}.jpg" for i in range(1, N_VIEWS + 1)]
    est, idx = recovered_poses(out, index.__getitem__)
    rot_err, centre_err = pose_errors(est, cams.c2w[idx].double().numpy())
    assert rot_err < 0.5 and centre_err < 0.01, (rot_err, centre_err)


@pytest.mark.parametrize("name, codec, params", [("v.mp4", "libx264", ["-crf", "0"]),
                                                 ("v.mov", "libx265", ["-x265-params", "lossless=1:log-level=error"])])
def test_video_keeps_the_sharpest_frame_of_each_window(tmp_path, name, codec, params):
    """6 frames in 2 windows of 3; a blurred frame loses to its sharp neighbours. H.264 in mp4 and
    HEVC in mov (what phones record) read alike."""
    from nerf.datasets.video_frames import pick_frames

    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    blurred = ((sharp.astype(np.float32) + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, 1, (0, 1))) / 4)
    frames = [blurred, sharp, blurred, blurred, blurred, sharp]
    iio.imwrite(tmp_path / name, np.stack(frames).astype(np.uint8), plugin="FFMPEG", fps=6, codec=codec,
                quality=None, output_params=params, macro_block_size=16)
    kept, info = pick_frames(tmp_path / name, tmp_path / "out", 2)
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
