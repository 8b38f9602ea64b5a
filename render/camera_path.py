"""Camera paths through key cameras, and nerfstudio's camera_path.json.

A path is a list of key camera-to-world matrices (OpenGL, (k, 4, 4)) with a vertical field of
view each. Sampled frames follow a centripetal Catmull-Rom spline through the key positions and
a squad (spherical cubic) spline through the key rotations, timed by distance travelled so the
camera moves at an even pace. `capture_keyframes` turns a capture's training cameras (in any
order, hand-held jitter and all) into a few smoothed keys along the walk the photographer made,
which is what `render-video --path interpolate` flies through.

camera_path.json is nerfstudio's file: `camera_path` (one entry per frame: `camera_to_world`, 16
numbers row-major, `fov` in degrees, vertical, `aspect`), `render_width`, `render_height`, `fps`,
`seconds`, and the `keyframes` the path was drawn from. Matrices are read in the world frame of
the run that renders them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nerf.render.distortion import lens_focal


class CameraPathError(ValueError):
    """A camera path file that cannot be used; the message is one line naming the file."""


# --- rotations as unit quaternions (w, x, y, z), float64 numpy -------------------------------------

def quat_from_matrix(r: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotation matrices -> (n, 4) unit quaternions (w, x, y, z), w >= 0 where possible."""
    r = np.asarray(r, dtype=np.float64).reshape(-1, 3, 3)
    q = np.empty((r.shape[0], 4))
    for i, m in enumerate(r):
        tr = m[0, 0] + m[1, 1] + m[2, 2]
        if tr > 0:
            s = 2.0 * math.sqrt(tr + 1.0)
            q[i] = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
        elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
            s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
            q[i] = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
        elif m[1, 1] > m[2, 2]:
            s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
            q[i] = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
        else:
            s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
            q[i] = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q * np.where(q[:, :1] < 0, -1.0, 1.0)


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """(n, 4) quaternions (w, x, y, z), normalised here -> (n, 3, 3) rotation matrices."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def _qconj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _qlog(q: np.ndarray) -> np.ndarray:
    """Unit quaternion -> its log (a pure quaternion, returned as (..., 3))."""
    v = q[..., 1:]
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = np.arctan2(n, q[..., :1])
    return np.where(n > 1e-12, v / np.maximum(n, 1e-12) * angle, v)


def _qexp(v: np.ndarray) -> np.ndarray:
    """Pure quaternion (..., 3) -> unit quaternion exp(v)."""
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    s = np.where(n > 1e-12, np.sin(n) / np.maximum(n, 1e-12), 1.0)
    return np.concatenate([np.cos(n), v * s], -1)


def slerp(q0: np.ndarray, q1: np.ndarray, t) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions (..., 4) at t (broadcast), shortest arc."""
    q1 = np.where((np.sum(q0 * q1, -1, keepdims=True) < 0), -q1, q1)
    d = np.clip(np.sum(q0 * q1, -1, keepdims=True), -1.0, 1.0)
    theta = np.arccos(d)
    t = np.asarray(t, dtype=np.float64)[..., None] if np.ndim(t) else float(t)
    small = theta < 1e-6
    s = np.sin(theta)
    w0 = np.where(small, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(small, 1.0, s))
    w1 = np.where(small, t, np.sin(t * theta) / np.where(small, 1.0, s))
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def _hemisphere_chain(q: np.ndarray) -> np.ndarray:
    """Flip signs so each quaternion is on the same side as the one before (no long way round)."""
    q = q.copy()
    for i in range(1, len(q)):
        if np.dot(q[i - 1], q[i]) < 0:
            q[i] = -q[i]
    return q


def _squad_controls(q: np.ndarray, closed: bool) -> np.ndarray:
    """The squad inner control quaternion of each key: q_i exp(-(log(q_i* q_i+1) + log(q_i* q_i-1)) / 4)."""
    n = len(q)
    out = np.empty_like(q)
    for i in range(n):
        # an open path's ends continue at the rate of their last turn (a phantom key beyond them)
        prev = q[(i - 1) % n] if closed or i > 0 else _qmul(_qmul(q[0], _qconj(q[1])), q[0])
        nxt = q[(i + 1) % n] if closed or i < n - 1 else _qmul(_qmul(q[-1], _qconj(q[-2])), q[-1])
        prev = prev if np.dot(prev, q[i]) >= 0 else -prev
        nxt = nxt if np.dot(nxt, q[i]) >= 0 else -nxt
        inv = _qconj(q[i])
        out[i] = _qmul(q[i], _qexp(-(_qlog(_qmul(inv, nxt)) + _qlog(_qmul(inv, prev))) / 4.0))
    return out


def _catmull_rom(p0, p1, p2, p3, u: float) -> np.ndarray:
    """Centripetal Catmull-Rom between p1 and p2 at u in [0, 1] (Barry and Goldman's pyramid):
    knots spaced by the square root of chord length, so the curve neither loops nor cusps."""
    def knot(a, b):
        return max(float(np.linalg.norm(b - a)) ** 0.5, 1e-6)
    t0, t1 = 0.0, knot(p0, p1)
    t2 = t1 + knot(p1, p2)
    t3 = t2 + knot(p2, p3)
    t = t1 + u * (t2 - t1)
    a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
    a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
    a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
    b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
    b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
    return (t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2


def _as_numpy(c2w) -> np.ndarray:
    if isinstance(c2w, torch.Tensor):
        c2w = c2w.detach().cpu().double().numpy()
    return np.asarray(c2w, dtype=np.float64).reshape(-1, 4, 4)


def segment_lengths(c2w, closed: bool = False, rotation_weight: float | None = None) -> np.ndarray:
    """How far the camera travels between consecutive keys: distance moved plus angle turned
    (radians) times `rotation_weight` (default: the keys' mean distance from their centroid, so
    a turn on the spot still takes time). (k - 1,) or (k,) when closed."""
    m = _as_numpy(c2w)
    pos, q = m[:, :3, 3], _hemisphere_chain(quat_from_matrix(m[:, :3, :3]))
    nxt = np.roll(np.arange(len(m)), -1)[: len(m) if closed else len(m) - 1]
    cur = np.arange(len(nxt))
    if rotation_weight is None:
        rotation_weight = max(float(np.linalg.norm(pos - pos.mean(0), axis=1).mean()), 1e-3)
    angle = 2.0 * np.arccos(np.clip(np.abs(np.sum(q[cur] * q[nxt], -1)), 0.0, 1.0))
    return np.linalg.norm(pos[nxt] - pos[cur], axis=1) + rotation_weight * angle


def interpolate_path(c2w, n_frames: int, closed: bool = False, fov=None, times=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample `n_frames` cameras (n_frames, 4, 4) along the spline through key cameras c2w (k, 4, 4).

    Frames are spaced evenly in time; keys sit at `times` (k,) in [0, 1] (default: by distance
    travelled, `segment_lengths`). An open path starts at the first key and ends on the last; a
    closed one returns to the first key after the last and its frames stop one step short of it,
    so the video loops. fov (k,) per key is interpolated the same way (linearly) and returned
    (n_frames,), else None.
    """
    m = _as_numpy(c2w)
    k = len(m)
    if k == 0:
        raise CameraPathError("a camera path needs at least one key camera")
    if n_frames < 1:
        raise CameraPathError(f"a camera path needs at least one frame, got {n_frames}")
    fov_keys = None if fov is None else np.asarray(fov, dtype=np.float64).reshape(-1)
    if k == 1:
        out = np.repeat(m, n_frames, axis=0)
        return torch.from_numpy(out).float(), None if fov_keys is None else torch.full((n_frames,), float(fov_keys[0]))
    closed = closed and k > 2
    pos = m[:, :3, 3]
    q = _hemisphere_chain(quat_from_matrix(m[:, :3, :3]))
    n_seg = k if closed else k - 1
    if times is None:
        lengths = segment_lengths(m, closed)
        if lengths.sum() <= 1e-12:
            lengths = np.ones(n_seg)
        knots = np.concatenate([[0.0], np.cumsum(lengths)]) / lengths.sum()
    else:
        knots = np.asarray(times, dtype=np.float64).reshape(-1)
        if closed:
            knots = np.concatenate([knots, [1.0]])
        if len(knots) != n_seg + 1 or np.any(np.diff(knots) < 0):
            raise CameraPathError("key times must rise from 0 to 1, one per key")
    ctrl = _squad_controls(q, closed)
    frame_t = (np.arange(n_frames) / n_frames) if closed else np.linspace(0.0, 1.0, n_frames)

    def key(i):
        if closed:
            return pos[i % k]
        if i < 0:  # beyond the ends: the parabola through the three end keys, continued
            return 3 * pos[0] - 3 * pos[1] + pos[2] if k > 2 else 2 * pos[0] - pos[1]
        if i > k - 1:
            return 3 * pos[k - 1] - 3 * pos[k - 2] + pos[k - 3] if k > 2 else 2 * pos[k - 1] - pos[k - 2]
        return pos[i]

    # within a segment, the spline parameter u that has covered a given fraction of its arc length
    grid = np.linspace(0.0, 1.0, 33)
    arc = []
    for seg in range(n_seg):
        pts = np.stack([_catmull_rom(key(seg - 1), key(seg), key(seg + 1), key(seg + 2), u) for u in grid])
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        arc.append(cum / cum[-1] if cum[-1] > 1e-12 else grid)
    out = np.tile(np.eye(4), (n_frames, 1, 1))
    fov_out = np.empty(n_frames) if fov_keys is not None else None
    for f, t in enumerate(frame_t):
        seg = int(np.clip(np.searchsorted(knots, t, side="right") - 1, 0, n_seg - 1))
        span = knots[seg + 1] - knots[seg]
        frac = 0.0 if span <= 0 else float(np.clip((t - knots[seg]) / span, 0.0, 1.0))
        u = float(np.interp(frac, arc[seg], grid))
        out[f, :3, 3] = _catmull_rom(key(seg - 1), key(seg), key(seg + 1), key(seg + 2), u)
        a, b = q[seg], q[(seg + 1) % k]
        sa, sb = ctrl[seg], ctrl[(seg + 1) % k]
        if np.dot(a, b) < 0:  # the closing segment of a loop may cross hemispheres
            b, sb = -b, -sb
        qa = slerp(slerp(a, b, u), slerp(sa, sb, u), 2 * u * (1 - u))
        out[f, :3, :3] = matrix_from_quat(qa)[0]
        if fov_out is not None:
            fov_out[f] = fov_keys[seg] + frac * (fov_keys[(seg + 1) % k] - fov_keys[seg])
    return torch.from_numpy(out).float(), None if fov_out is None else torch.from_numpy(fov_out).float()


# --- a capture's training cameras as a walk ----------------------------------------------------------

def _pose_distances(m: np.ndarray) -> np.ndarray:
    """(n, n) distance between cameras: positions, plus viewing directions scaled to the rig's size."""
    pos, fwd = m[:, :3, 3], -m[:, :3, 2]
    size = max(float(np.linalg.norm(pos - pos.mean(0), axis=1).mean()), 1e-6)
    return (np.linalg.norm(pos[:, None] - pos[None], axis=-1)
            + 0.5 * size * np.linalg.norm(fwd[:, None] - fwd[None], axis=-1))


def order_cameras(c2w) -> tuple[list[int], bool]:
    """An order of cameras (n, 4, 4) that walks from one to the next without jumping, and whether
    the walk closes into a loop (a capture that went all the way round).

    The shortest open walk is approximated by a nearest-neighbour chain from the outermost camera,
    improved by 2-opt (reversing a stretch wherever that shortens the walk). The walk is a loop
    when its two ends are about as close as neighbouring cameras are.
    """
    m = _as_numpy(c2w)
    n = len(m)
    if n <= 2:
        return list(range(n)), False
    d = _pose_distances(m)
    start = int(np.argmax(d.sum(1)))
    order, left = [start], set(range(n)) - {start}
    while left:
        rest = np.fromiter(left, dtype=np.int64)
        nxt = int(rest[np.argmin(d[order[-1], rest])])
        order.append(nxt)
        left.remove(nxt)
    order = np.array(order)
    for _ in range(50):  # 2-opt on an open path: reverse order[i+1..j]
        improved = False
        for i in range(n - 2):
            a, b = order[i], order[i + 1]
            c, dd = order[i + 2:], np.append(order[i + 3:], -1)
            old = d[a, b] + np.where(dd >= 0, d[c, np.maximum(dd, 0)], 0.0)
            new = d[a, c] + np.where(dd >= 0, d[b, np.maximum(dd, 0)], 0.0)
            gain = old - new
            j = int(np.argmax(gain))
            if gain[j] > 1e-9:
                order[i + 1:i + 3 + j] = order[i + 1:i + 3 + j][::-1]
                improved = True
        if not improved:
            break
    steps = d[order[:-1], order[1:]]
    closed = bool(n >= 6 and d[order[-1], order[0]] <= 3.0 * float(np.median(steps)))
    return order.tolist(), closed


def _smoothed_keys(m: np.ndarray, closed: bool, n_keys: int) -> np.ndarray:
    """n_keys cameras spread evenly along the ordered walk m (n, 4, 4), each a Gaussian-weighted
    average of the cameras around it (position mean, normalised quaternion mean), which irons out
    hand-held jitter."""
    n = len(m)
    lengths = segment_lengths(m, closed)
    if lengths.sum() <= 1e-12:
        return m[:1]
    cum = np.concatenate([[0.0], np.cumsum(lengths)])  # arc position of each camera (and the loop's end)
    total = cum[-1]
    where = (np.arange(n_keys) / n_keys if closed else np.linspace(0.0, 1.0, n_keys)) * total
    sigma = 0.5 * total / n_keys
    pos = m[:, :3, 3]
    q = _hemisphere_chain(quat_from_matrix(m[:, :3, :3]))
    keys = np.tile(np.eye(4), (n_keys, 1, 1))
    for i, s in enumerate(where):
        off = cum[:n] - s
        if closed:
            off = (off + total / 2) % total - total / 2
        w = np.exp(-0.5 * (off / sigma) ** 2)
        w /= w.sum()
        keys[i, :3, 3] = (w[:, None] * pos).sum(0)
        ref = q[int(np.argmax(w))]
        aligned = np.where((q @ ref)[:, None] < 0, -q, q)
        keys[i, :3, :3] = matrix_from_quat((w[:, None] * aligned).sum(0))[0]
    return keys


def capture_keyframes(c2w, max_keys: int = 12) -> tuple[torch.Tensor, bool]:
    """Key cameras (k, 4, 4) for a smooth fly-through of a capture's training cameras (n, 4, 4), and
    whether the path should loop: the cameras are put in walking order (`order_cameras`), then
    about `max_keys` smoothed keys are taken along the walk (all cameras when there are fewer)."""
    m = _as_numpy(c2w)
    order, closed = order_cameras(m)
    walk = m[order]
    if len(walk) <= 2:
        return torch.from_numpy(walk).float(), False
    keys = _smoothed_keys(walk, closed, min(max_keys, len(walk)))
    return torch.from_numpy(keys).float(), closed


def capture_path(c2w, n_frames: int, max_keys: int = 12) -> torch.Tensor:
    """(n_frames, 4, 4): the smooth path through a capture's training cameras (`capture_keyframes`)."""
    keys, closed = capture_keyframes(c2w, max_keys)
    return interpolate_path(keys, n_frames, closed)[0]


# --- nerfstudio's camera_path.json ------------------------------------------------------------------

def focal_from_fov(fov_deg: float, height: float) -> float:
    """Focal length in pixels of a camera with vertical field of view `fov_deg` and image `height`."""
    return lens_focal(fov_deg, height, fisheye=False)


def fov_from_focal(focal: float, height: float) -> float:
    """Vertical field of view in degrees of focal length `focal` (pixels) over image `height`."""
    return math.degrees(2.0 * math.atan(0.5 * height / focal))


@dataclass
class CameraPath:
    """A camera path to render: c2w (n, 4, 4) OpenGL, fov (n,) vertical degrees, the image size and
    frame rate; keyframes as read (c2w (k, 4, 4), fov (k,)) when the file has them."""

    c2w: torch.Tensor
    fov: torch.Tensor
    width: int
    height: int
    fps: float
    keyframes: tuple[torch.Tensor, torch.Tensor] | None = None
    is_cycle: bool = False

    @property
    def seconds(self) -> float:
        return len(self.c2w) / self.fps


def camera_path_dict(c2w, fov, width: int, height: int, fps: float, keyframes=None, keyframe_fov=None,
                     is_cycle: bool = False) -> dict:
    """nerfstudio's camera_path.json content for frames c2w (n, 4, 4) with vertical fov (n,) in degrees;
    keyframes (k, 4, 4) and their fov (k,), when given, are stored too (as nerfstudio's viewer does)."""
    m = _as_numpy(c2w)
    fovs = np.broadcast_to(np.asarray(fov, dtype=np.float64).reshape(-1), (len(m),))
    aspect = float(width) / float(height)
    out = {
        "camera_type": "perspective", "render_height": int(height), "render_width": int(width),
        "camera_path": [{"camera_to_world": mm.reshape(-1).tolist(), "fov": float(f), "aspect": aspect}
                        for mm, f in zip(m, fovs)],
        "fps": float(fps), "seconds": len(m) / float(fps), "is_cycle": bool(is_cycle), "smoothness_value": 0.5,
        "crop": None,
    }
    if keyframes is not None:
        km = _as_numpy(keyframes)
        kf = np.broadcast_to(np.asarray(keyframe_fov if keyframe_fov is not None else fovs[0], dtype=np.float64)
                             .reshape(-1), (len(km),))
        out["keyframes"] = [{"matrix": mm.reshape(-1).tolist(), "fov": float(f), "aspect": aspect,
                             "override_transition_enabled": False, "override_transition_sec": None}
                            for mm, f in zip(km, kf)]
    return out


def write_camera_path(path: Path, c2w, fov, width: int, height: int, fps: float, keyframes=None,
                      keyframe_fov=None, is_cycle: bool = False) -> Path:
    """Write nerfstudio's camera_path.json (see `camera_path_dict`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = camera_path_dict(c2w, fov, width, height, fps, keyframes, keyframe_fov, is_cycle)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)
    return path


def _matrix(value, where: str) -> np.ndarray:
    """A 4x4 from 16 numbers (row-major), nested 4x4 lists, or (older nerfstudio viewers) a JSON string
    of three.js's column-major elements."""
    column_major = isinstance(value, str)
    if column_major:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise CameraPathError(f"{where}: not a list of 16 numbers") from None
    try:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise CameraPathError(f"{where}: not a list of 16 numbers") from None
    if arr.size == 12:
        arr = np.concatenate([arr, [0.0, 0.0, 0.0, 1.0]])
    if arr.size != 16 or not np.all(np.isfinite(arr)):
        raise CameraPathError(f"{where}: expected 16 finite numbers, got {arr.size}")
    m = arr.reshape(4, 4)
    return m.T if column_major else m


def _fov(value, where: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise CameraPathError(f"{where}: fov must be a number of degrees, got {value!r}") from None
    if not 0.0 < f < 180.0:
        raise CameraPathError(f"{where}: fov must be between 0 and 180 degrees, got {f:g}")
    return f


def _camera_list(entries: list, key: str, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices (n, 4, 4) under `key` and fields of view (n,) of a list of camera entries."""
    mats, fovs = [], []
    for i, cam in enumerate(entries):
        at = f"{where}[{i}]"
        if not isinstance(cam, dict) or key not in cam:
            raise CameraPathError(f"{at}: needs {'a matrix' if key == 'matrix' else key}")
        mats.append(_matrix(cam[key], at))
        fovs.append(_fov(cam.get("fov", 50.0), at))
    return torch.tensor(np.stack(mats)).float(), torch.tensor(fovs).float()


def read_camera_path(path: Path, default_size: tuple[int, int] | None = None) -> CameraPath:
    """Read a camera_path.json (nerfstudio's viewer or ours). The frames are `camera_path`; a file
    with only `keyframes` is interpolated to `seconds` x `fps` frames. default_size (width, height)
    stands in for a missing render size. Raises CameraPathError with one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CameraPathError(f"{path}: camera path file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CameraPathError(f"{path}: malformed JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(data, dict):
        raise CameraPathError(f"{path}: expected a JSON object with camera_path or keyframes")
    kind = data.get("camera_type", "perspective")
    if kind != "perspective":
        raise CameraPathError(f"{path}: camera_type {kind!r} is not supported (only perspective)")
    try:
        width = int(data.get("render_width") or (default_size or (0, 0))[0])
        height = int(data.get("render_height") or (default_size or (0, 0))[1])
        fps = float(data.get("fps", 30.0))
    except (TypeError, ValueError):
        raise CameraPathError(f"{path}: render_width, render_height and fps must be numbers") from None
    if width < 1 or height < 1:
        raise CameraPathError(f"{path}: render_width and render_height must be positive")
    if not fps > 0:
        raise CameraPathError(f"{path}: fps must be > 0, got {fps:g}")
    keys = None
    raw_keys = data.get("keyframes") or []
    if not isinstance(raw_keys, list):
        raise CameraPathError(f"{path}: keyframes must be a list")
    if raw_keys:
        keys = _camera_list(raw_keys, "matrix", f"{path}: keyframes")
    frames = data.get("camera_path")
    if frames:
        if not isinstance(frames, list):
            raise CameraPathError(f"{path}: camera_path must be a list of cameras")
        c2w, fov = _camera_list(frames, "camera_to_world", f"{path}: camera_path")
    elif keys is not None:
        try:
            seconds = float(data.get("seconds", len(keys[0])))
        except (TypeError, ValueError):
            raise CameraPathError(f"{path}: seconds must be a number") from None
        n = max(int(round(seconds * fps)), 1)
        c2w, fov = interpolate_path(keys[0], n, bool(data.get("is_cycle", False)), fov=keys[1])
    else:
        raise CameraPathError(f"{path}: no cameras (neither camera_path nor keyframes)")
    rot = c2w[:, :3, :3].double()
    if not torch.allclose(rot @ rot.transpose(1, 2), torch.eye(3, dtype=torch.float64).expand_as(rot), atol=1e-3):
        raise CameraPathError(f"{path}: camera_to_world must be a rotation and a translation (no scale)")
    return CameraPath(c2w=c2w, fov=fov, width=width, height=height, fps=fps, keyframes=keys,
                      is_cycle=bool(data.get("is_cycle", False)))
