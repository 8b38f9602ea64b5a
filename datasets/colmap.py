"""COLMAP sparse models: cameras, images (and points3D, for the depth range) in .bin or .txt.

Looked for in sparse/0, sparse, colmap/sparse/0 or the folder itself (the first holding
cameras.* and images.*; .bin before .txt), with the photos in images/ (images_K when
data.downscale = K > 1 and that folder exists, else images/ area-downscaled by K).

Camera models: SIMPLE_PINHOLE (f, cx, cy), PINHOLE (fx, fy, cx, cy), SIMPLE_RADIAL (f, cx, cy, k),
RADIAL (f, cx, cy, k1, k2), OPENCV (fx, fy, cx, cy, k1, k2, p1, p2); distortion is undistorted
when rays are made. COLMAP's pixel convention (centre of the top-left pixel at (0.5, 0.5)) is ours.

Poses: images store the world-to-camera rotation (quaternion qw, qx, qy, qz) and translation of
an OpenCV camera (x right, y down, looking down +z): camera-to-world is [R^T | -R^T t], and
flipping its y and z axes gives our OpenGL convention. Frames are ordered by image name; the
cameras are centred and scaled from their positions (see `datasets.captures`), and near/far
come from the depths of the points each image sees (0.1 and 99.9 percentiles, as LLFF's
imgs2poses does, widened by 10%).
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from nerf.datasets.captures import Frame, build_scene
from nerf.datasets.errors import DatasetError
from nerf.datasets.options import DataOptions
from nerf.datasets.scene import Scene

MODEL_DIRS = ("sparse/0", "sparse", "colmap/sparse/0", ".")
# model id -> (name, number of parameters)
CAMERA_MODELS = {
    0: ("SIMPLE_PINHOLE", 3), 1: ("PINHOLE", 4), 2: ("SIMPLE_RADIAL", 4), 3: ("RADIAL", 5), 4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8), 6: ("FULL_OPENCV", 12), 7: ("FOV", 5), 8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5), 10: ("THIN_PRISM_FISHEYE", 12),
}
MODEL_IDS = {name: (i, n) for i, (name, n) in CAMERA_MODELS.items()}
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
POINT2D = np.dtype([("x", "<f8"), ("y", "<f8"), ("id", "<i8")])


def find_model(root: Path) -> tuple[Path, str] | None:
    """(folder, 'bin' or 'txt') of the first COLMAP model under `root`, or None."""
    for sub in MODEL_DIRS:
        d = root / sub
        for ext in ("bin", "txt"):
            if (d / f"cameras.{ext}").is_file() and (d / f"images.{ext}").is_file():
                return d, ext
    return None


def is_colmap(root: Path) -> bool:
    return find_model(root) is not None


# ------------------------------------------------------------------------------------ file readers

class _Bytes:
    """Sequential little-endian reads from a file's bytes; running short is a one-line error."""

    def __init__(self, path: Path):
        self.path, self.data, self.pos = path, path.read_bytes(), 0

    def read(self, fmt: str):
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise DatasetError(f"{self.path}: truncated at byte {self.pos} (a corrupt or unfinished model)")
        out = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return out

    def read_string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise DatasetError(f"{self.path}: truncated image name at byte {self.pos}")
        s = self.data[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end + 1
        return s

    def read_array(self, dtype: np.dtype, count: int) -> np.ndarray:
        size = dtype.itemsize * count
        if self.pos + size > len(self.data):
            raise DatasetError(f"{self.path}: truncated at byte {self.pos} (a corrupt or unfinished model)")
        out = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
        self.pos += size
        return out


def _check_params(path: Path, cam_id: int, model: str, params) -> tuple[str, np.ndarray]:
    if model not in SUPPORTED:
        raise DatasetError(f"{path}: camera {cam_id} uses the {model} model; supported: {', '.join(SUPPORTED)}")
    params = np.asarray(params, dtype=np.float64)
    if params.size != MODEL_IDS[model][1]:
        raise DatasetError(f"{path}: camera {cam_id} ({model}) needs {MODEL_IDS[model][1]} parameters, "
                           f"got {params.size}")
    return model, params


def read_cameras_bin(path: Path) -> dict[int, tuple[str, int, int, np.ndarray]]:
    """camera id -> (model name, width, height, params)."""
    r = _Bytes(path)
    (n,) = r.read("Q")
    cams = {}
    for _ in range(n):
        cam_id, model_id, w, h = r.read("iiQQ")
        if model_id not in CAMERA_MODELS:
            raise DatasetError(f"{path}: camera {cam_id} has unknown model id {model_id}")
        name, n_params = CAMERA_MODELS[model_id]
        params = r.read("d" * n_params)
        model, params = _check_params(path, cam_id, name, params)
        cams[cam_id] = (model, w, h, params)
    return cams



def _records(path: Path):
    """(line number, whitespace-split fields) of each non-empty, non-comment line of a COLMAP .txt file."""
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield lineno, line.split()

def read_cameras_txt(path: Path) -> dict[int, tuple[str, int, int, np.ndarray]]:
    cams = {}
    for lineno, parts in _records(path):
        try:
            cam_id, model, w, h = int(parts[0]), parts[1].upper(), int(parts[2]), int(parts[3])
            params = [float(p) for p in parts[4:]]
        except (ValueError, IndexError):
            raise DatasetError(f"{path}: line {lineno} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'") from None
        if model not in MODEL_IDS:
            raise DatasetError(f"{path}: line {lineno} has unknown camera model {model}")
        model, params = _check_params(path, cam_id, model, params)
        cams[cam_id] = (model, w, h, params)
    return cams


def read_images_bin(path: Path) -> list[dict]:
    """Per registered image: id, qvec (4,), tvec (3,), camera_id, name, point3d_ids (m,)."""
    r = _Bytes(path)
    (n,) = r.read("Q")
    images = []
    for _ in range(n):
        image_id, qw, qx, qy, qz, tx, ty, tz, cam_id = r.read("idddddddi")
        name = r.read_string()
        (n_pts,) = r.read("Q")
        pts = r.read_array(POINT2D, n_pts)
        images.append({"id": image_id, "qvec": np.array([qw, qx, qy, qz]), "tvec": np.array([tx, ty, tz]),
                       "camera_id": cam_id, "name": name, "point3d_ids": pts["id"][pts["id"] >= 0].copy()})
    return images


def read_images_txt(path: Path) -> list[dict]:
    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    images, i = [], 0
    while i < len(lines):
        header = lines[i].strip()
        if not header:
            i += 1
            continue
        parts = header.split()
        try:
            image_id = int(parts[0])
            q = np.array([float(v) for v in parts[1:5]])
            t = np.array([float(v) for v in parts[5:8]])
            cam_id = int(parts[8])
            name = " ".join(parts[9:])
            if q.size != 4 or t.size != 3 or not name:
                raise ValueError
        except (ValueError, IndexError):
            raise DatasetError(f"{path}: '{header[:60]}' is not 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'") from None
        # the POINTS2D line (empty when an image has none); some exporters leave it out entirely,
        # so a next line that does not parse as (X, Y, POINT3D_ID) triples is the next image
        pts_line = lines[i + 1].split() if i + 1 < len(lines) else []
        try:
            if len(pts_line) % 3:
                raise ValueError
            ids = np.array([int(v) for v in pts_line[2::3]], dtype=np.int64)
            i += 2
        except ValueError:
            ids = np.zeros(0, dtype=np.int64)
            i += 1
        images.append({"id": image_id, "qvec": q, "tvec": t, "camera_id": cam_id, "name": name,
                       "point3d_ids": ids[ids >= 0]})
    return images


def read_points_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Point ids (m,) and positions (m, 3); the tracks are skipped."""
    r = _Bytes(path)
    (n,) = r.read("Q")
    ids, xyz = np.empty(n, dtype=np.int64), np.empty((n, 3))
    for k in range(n):
        pid, x, y, z, _, _, _, _, track_len = r.read("QdddBBBdQ")
        r.pos += 8 * track_len
        ids[k], xyz[k] = pid, (x, y, z)
    return ids, xyz


def read_points_txt(path: Path) -> tuple[np.ndarray, np.ndarray]:
    ids, xyz = [], []
    for lineno, parts in _records(path):
        try:
            ids.append(int(parts[0]))
            xyz.append([float(v) for v in parts[1:4]])
        except (ValueError, IndexError):
            raise DatasetError(f"{path}: line {lineno} is not 'POINT3D_ID X Y Z R G B ERROR TRACK...'") from None
    return np.array(ids, dtype=np.int64), np.array(xyz, dtype=np.float64).reshape(-1, 3)


# ------------------------------------------------------------------------------------- conversion

def qvec_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) -> 3x3 rotation (normalised first)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def colmap_to_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera (OpenCV) -> camera-to-world 4x4 in the OpenGL convention."""
    rot = qvec_to_rotmat(qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = rot.T
    c2w[:3, 3] = -rot.T @ tvec
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics(model: str, params: np.ndarray) -> tuple[float, float, float, float, np.ndarray | None]:
    """fx, fy, cx, cy and (k1, k2, p1, p2) (None when there is no distortion)."""
    if model == "SIMPLE_PINHOLE":
        f, cx, cy = params
        return f, f, cx, cy, None
    if model == "PINHOLE":
        fx, fy, cx, cy = params
        return fx, fy, cx, cy, None
    if model == "SIMPLE_RADIAL":
        f, cx, cy, k = params
        dist = np.array([k, 0.0, 0.0, 0.0])
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = params
        dist = np.array([k1, k2, 0.0, 0.0])
    else:  # OPENCV
        fx, fy, cx, cy, k1, k2, p1, p2 = params
        dist = np.array([k1, k2, p1, p2])
        return fx, fy, cx, cy, dist if np.any(dist != 0) else None
    return f, f, cx, cy, dist if np.any(dist != 0) else None


def depth_range(images: list[dict], point_ids: np.ndarray, xyz: np.ndarray) -> tuple[float, float] | None:
    """(near, far) over all images from the points each sees: the 0.1 percentile of their depth
    along the optical axis (a lower bound on ray distance) and the 99.9 percentile of their
    distance, widened by 10% either way; None without points."""
    if len(point_ids) == 0:
        return None
    order = np.argsort(point_ids)
    sorted_ids = point_ids[order]
    nears, fars = [], []
    for im in images:
        ids = im["point3d_ids"]
        pos = np.searchsorted(sorted_ids, ids)
        ok = (pos < len(sorted_ids)) & (sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == ids)
        if not ok.any():
            continue
        pts = xyz[order[pos[ok]]]
        rot = qvec_to_rotmat(im["qvec"])
        cam = pts @ rot.T + im["tvec"]
        z = cam[:, 2]
        z, dist = z[z > 0], np.linalg.norm(cam[z > 0], axis=-1)
        if len(z):
            nears.append(np.percentile(z, 0.1))
            fars.append(np.percentile(dist, 99.9))
    if not nears:
        return None
    return 0.9 * float(min(nears)), 1.1 * float(max(fars))


def load_colmap(root: Path, split: str, opts: DataOptions) -> Scene:
    found = find_model(root)
    if found is None:
        raise DatasetError(f"{root}: no COLMAP model (cameras and images .bin or .txt) in "
                           f"{', '.join(MODEL_DIRS)}")
    model_dir, ext = found
    if ext == "bin":
        cams = read_cameras_bin(model_dir / "cameras.bin")
        images = read_images_bin(model_dir / "images.bin")
    else:
        cams = read_cameras_txt(model_dir / "cameras.txt")
        images = read_images_txt(model_dir / "images.txt")
    if not images:
        raise DatasetError(f"{model_dir / f'images.{ext}'}: no registered images")
    points_file = model_dir / f"points3D.{ext}"
    point_ids, xyz = (read_points_bin(points_file) if ext == "bin" else read_points_txt(points_file)) \
        if points_file.is_file() else (np.zeros(0, dtype=np.int64), np.zeros((0, 3)))

    k = opts.downscale
    image_dir, factor = root / "images", k
    if k > 1 and (root / f"images_{k}").is_dir():
        image_dir, factor = root / f"images_{k}", 1
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: image folder not found (COLMAP model in {model_dir})")

    images = sorted(images, key=lambda im: im["name"])
    frames = []
    for im in images:
        if im["camera_id"] not in cams:
            raise DatasetError(f"{model_dir / f'images.{ext}'}: image {im['name']} uses camera {im['camera_id']}, "
                               f"which cameras.{ext} does not define")
        model, w, h, params = cams[im["camera_id"]]
        fx, fy, cx, cy, dist = intrinsics(model, params)
        frames.append(Frame(path=image_dir / im["name"], c2w=colmap_to_c2w(im["qvec"], im["tvec"]),
                            fx=fx, fy=fy, cx=cx, cy=cy, width=int(w), height=int(h), distortion=dist))
    bbox = None
    if len(xyz) >= 8:
        bbox = np.percentile(xyz, [1.0, 99.0], axis=0)
    return build_scene(root, "colmap", frames, split, opts, model_dir / f"images.{ext}",
                       bbox=bbox, depth_range=depth_range(images, point_ids, xyz), downscale=factor,
                       metadata={"model": str(model_dir), "n_points": int(len(xyz))})
