"""Camera paths: the spline through key cameras, the walking order of a capture's cameras, the
smooth path render-video flies through a capture, and nerfstudio's camera_path.json."""
import json
import math

import numpy as np
import pytest
import torch

from nerf.inference.video import file_cameras, path_cameras, resolve_path
from nerf.render.camera_path import (
    CameraPathError,
    capture_keyframes,
    interpolate_path,
    matrix_from_quat,
    order_cameras,
    quat_from_matrix,
    read_camera_path,
    slerp,
    write_camera_path,
)
from nerf.render.paths import look_at


def _angle(r1: np.ndarray, r2: np.ndarray) -> float:
    """Rotation angle (radians) between two rotation matrices."""
    return math.acos(np.clip((np.trace(r1.T @ r2) - 1) / 2, -1, 1))


def _orbit(n: int, radius: float = 3.0, elevation: float = 20.0, turn: float = 1.0) -> np.ndarray:
    """n cameras on `turn` of a circle around the origin (z up), looking at it."""
    theta = torch.arange(n, dtype=torch.float64) * (2 * math.pi * turn / (n if turn == 1.0 else n - 1))
    el = math.radians(elevation)
    eye = radius * torch.stack([math.cos(el) * torch.cos(theta), math.cos(el) * torch.sin(theta),
                                torch.full_like(theta, math.sin(el))], -1)
    return look_at(eye.float(), torch.zeros(3), torch.tensor([0.0, 0.0, 1.0])).double().numpy()


def test_quaternions_round_trip_and_slerp_halves_the_angle():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    r = matrix_from_quat(q)
    assert np.allclose(r @ r.transpose(0, 2, 1), np.eye(3), atol=1e-12)
    assert np.allclose(matrix_from_quat(quat_from_matrix(r)), r, atol=1e-9)
    mid = matrix_from_quat(slerp(q[0], q[1], 0.5))[0]
    assert _angle(r[0], mid) == pytest.approx(_angle(r[0], r[1]) / 2, abs=1e-9)
    assert _angle(mid, r[1]) == pytest.approx(_angle(r[0], r[1]) / 2, abs=1e-9)


def test_open_path_passes_through_its_keys_at_an_even_pace():
    keys = _orbit(9, turn=0.5)[::2]  # 5 keys, 45 degrees apart, over half a circle
    frames, fov = interpolate_path(keys, 41, closed=False, fov=[40, 45, 50, 55, 60])
    f = frames.double().numpy()
    for k, i in enumerate((0, 10, 20, 30, 40)):  # equal spacing: key k lands on frame 10 k
        assert np.abs(f[i] - keys[k]).max() < 1e-5
    assert fov[20].item() == pytest.approx(50.0) and fov[5].item() == pytest.approx(42.5)
    radius = np.linalg.norm(f[:, :3, 3], axis=1)
    assert radius.min() > 0.98 * 3.0 and radius.max() < 3.0 + 1e-5  # keys 45 degrees apart: within 2% of the circle
    finer = interpolate_path(_orbit(17, turn=0.5)[::2], 81)[0].double().numpy()
    assert np.linalg.norm(finer[:, :3, 3], axis=1).min() > 0.998 * 3.0  # 22.5 degrees apart: within 0.2%
    steps = np.linalg.norm(np.diff(f[:, :3, 3], axis=0), axis=1)
    assert steps.max() / steps.min() < 1.1
    turns = [_angle(f[i, :3, :3], f[i + 1, :3, :3]) for i in range(40)]
    assert max(turns) / min(turns) < 1.2  # squad: no jerk at the keys, no easing at the ends
    # every frame still looks at the circle's centre, within a degree
    fwd = -f[:, :3, 2]
    to_centre = -f[:, :3, 3] / radius[:, None]
    assert np.degrees(np.arccos(np.clip((fwd * to_centre).sum(1), -1, 1))).max() < 1.0


def test_closed_path_loops_back_to_its_first_key():
    keys = _orbit(8)
    frames = interpolate_path(keys, 32, closed=True)[0].double().numpy()
    assert np.abs(frames[0] - keys[0]).max() < 1e-5 and np.abs(frames[4] - keys[1]).max() < 1e-5
    gap = np.linalg.norm(frames[-1, :3, 3] - frames[0, :3, 3])
    step = np.linalg.norm(frames[1, :3, 3] - frames[0, :3, 3])
    assert gap == pytest.approx(step, rel=0.05)  # the last frame is one step before the first


def test_one_key_is_a_still_path_and_no_key_is_an_error():
    keys = _orbit(3)[:1]
    frames = interpolate_path(keys, 5)[0]
    assert frames.shape == (5, 4, 4) and torch.allclose(frames, torch.from_numpy(keys).float().expand(5, 4, 4))
    with pytest.raises(CameraPathError):
        interpolate_path(np.zeros((0, 4, 4)), 5)


def test_order_cameras_walks_a_shuffled_capture():
    rng = np.random.default_rng(1)
    arc = _orbit(20, turn=0.25)  # a capture that covered 90 degrees
    perm = rng.permutation(20)
    order, closed = order_cameras(arc[perm])
    walk = perm[order]
    assert not closed and (list(walk) == list(range(20)) or list(walk) == list(range(19, -1, -1)))
    ring = _orbit(30)  # all the way round
    perm = rng.permutation(30)
    order, closed = order_cameras(ring[perm])
    walk = perm[order]
    assert closed
    assert all((b - a) % 30 in (1, 29) for a, b in zip(walk[:-1], walk[1:]))


def test_capture_keyframes_smooth_hand_held_jitter():
    rng = np.random.default_rng(2)
    ring = _orbit(60)
    noisy = ring.copy()
    noisy[:, :3, 3] += rng.normal(scale=0.05, size=(60, 3))
    keys, closed = capture_keyframes(noisy[rng.permutation(60)], max_keys=12)
    keys = keys.double().numpy()
    assert closed and len(keys) == 12
    off_noisy = np.abs(np.linalg.norm(noisy[:, :3, 3], axis=1) - 3.0).mean()
    height_noisy = np.abs(noisy[:, 2, 3] - ring[0, 2, 3]).mean()
    height_keys = np.abs(keys[:, 2, 3] - ring[0, 2, 3]).mean()
    assert height_keys < 0.5 * height_noisy and off_noisy > 0.02
    frames = interpolate_path(keys, 90, closed)[0].double().numpy()
    steps = np.linalg.norm(np.diff(frames[:, :3, 3], axis=0), axis=1)
    assert steps.max() / np.median(steps) < 1.5  # no jumps


def test_auto_path_of_a_capture_goes_through_its_cameras():
    arc = _orbit(16, turn=0.25)
    scene = {"format": "colmap", "render_path": "orbit", "train_c2w": arc.tolist(),
             "intrinsics": {"fx": 50.0, "fy": 50.0, "cx": 32.0, "cy": 24.0, "width": 64, "height": 48}}
    assert resolve_path(scene, "auto") == "interpolate"
    assert resolve_path({**scene, "format": "blender"}, "auto") == "spherical"
    assert resolve_path({**scene, "format": "builtin", "render_path": None}, "auto") == "orbit"
    assert resolve_path({**scene, "format": "llff", "render_path": "spiral"}, "auto") == "spiral"
    cams = path_cameras(scene, "auto", 24, 2)
    assert cams.width == 32 and cams.height == 24 and cams.fx[0] == 25.0
    pos = cams.c2w[:, :3, 3].double().numpy()
    # the 90-degree arc, not an orbit: every frame within the span of the training cameras' angles
    angles = np.degrees(np.arctan2(pos[:, 1], pos[:, 0]))
    assert angles.min() > -1.0 and angles.max() < 91.0
    orbit = path_cameras(scene, "orbit", 24, 2).c2w[:, :3, 3].double().numpy()
    assert np.degrees(np.arctan2(orbit[:, 1], orbit[:, 0])).max() > 150.0


def test_camera_path_json_round_trip(tmp_path):
    keys = _orbit(4, turn=0.5)
    frames, fov = interpolate_path(keys, 36, fov=[50, 50, 50, 60])
    path = write_camera_path(tmp_path / "camera_path.json", frames, fov, 160, 90, 12.0, keyframes=keys,
                             keyframe_fov=[50, 50, 50, 60])
    data = json.loads(path.read_text())
    assert data["seconds"] == 3.0 and len(data["camera_path"]) == 36 and len(data["keyframes"]) == 4
    assert data["camera_path"][0]["aspect"] == pytest.approx(160 / 90)
    cp = read_camera_path(path)
    assert (cp.width, cp.height, cp.fps, cp.seconds) == (160, 90, 12.0, 3.0)
    assert torch.allclose(cp.c2w, frames, atol=1e-6) and torch.allclose(cp.fov, fov)
    cams = file_cameras(cp, downscale=2)
    assert (cams.width, cams.height) == (80, 45)
    assert cams.fy[0].item() == pytest.approx(0.5 * 45 / math.tan(math.radians(50) / 2), rel=1e-6)


def test_keyframes_only_file_in_nerfstudio_style(tmp_path):
    """An older nerfstudio file: keyframes whose matrix is a string of three.js's column-major
    elements, no sampled frames; it is interpolated to seconds x fps frames."""
    keys = _orbit(3, turn=0.5)
    data = {"camera_type": "perspective", "render_height": 48, "render_width": 64, "fps": 10, "seconds": 2.5,
            "keyframes": [{"matrix": json.dumps(k.T.reshape(-1).tolist()), "fov": 45,
                           "properties": "[[\"FOV\",45]]"} for k in keys]}
    (tmp_path / "p.json").write_text(json.dumps(data))
    cp = read_camera_path(tmp_path / "p.json")
    assert len(cp.c2w) == 25 and cp.fov.eq(45).all()
    assert np.abs(cp.c2w[0].double().numpy() - keys[0]).max() < 1e-5
    assert np.abs(cp.c2w[-1].double().numpy() - keys[-1]).max() < 1e-5


@pytest.mark.parametrize("content, words", [
    ("{not json", "malformed JSON"),
    ('{"camera_type": "fisheye", "camera_path": []}', "fisheye"),
    ('{"render_width": 8, "render_height": 8, "camera_path": [{"fov": 50}]}', "camera_path[0]: needs camera_to_world"),
    ('{"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": [1, 2, 3], "fov": 50}]}',
     "16 finite numbers"),
    ('{"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": [2,0,0,0, 0,2,0,0, 0,0,2,0, 0,0,0,1], '
     '"fov": 50}]}', "rotation"),
    ('{"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1], '
     '"fov": 0}]}', "between 0 and 180"),
    ('{"render_width": 8, "render_height": 8}', "no cameras"),
])
def test_bad_camera_path_files_are_one_line(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CameraPathError) as exc:
        read_camera_path(path)
    assert words in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)
