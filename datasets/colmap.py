"""COLMAP sparse models: cameras, images (and points3D, for the depth range and sparse depth) in .bin or .txt.

Looked for in sparse/0, sparse, colmap/sparse/0 or the folder itself (the first holding
cameras.* and images.*; .bin before .txt), with the photos in images/ (images_K when
data.downscale = K > 1 and that folder exists, else images/ area-downscaled by K).

The files are read by `pycolmap.Reconstruction` (COLMAP's own reader: the legacy layout and
the rigs/frames one of COLMAP 3.12+). Two things COLMAP's reader does not take are patched in a
temporary copy first: a model without its points3D file (read as having no points), and an
images.txt whose exporter left out the POINTS2D line of each image.

Camera models: SIMPLE_PINHOLE (f, cx, cy), PINHOLE (fx, fy, cx, cy), SIMPLE_RADIAL (f, cx, cy, k),
RADIAL (f, cx, cy, k1, k2), OPENCV (fx, fy, cx, cy, k1, k2, p1, p2), and the equidistant fisheyes
SIMPLE_RADIAL_FISHEYE (f, cx, cy, k), RADIAL_FISHEYE (f, cx, cy, k1, k2) and OPENCV_FISHEYE
(fx, fy, cx, cy, k1, k2, k3, k4), the angle theta of a ray imaged at radius
f theta (1 + k1 theta^2 + k2 theta^4 + k3 theta^6 + k4 theta^8) (process-data writes
OPENCV_FISHEYE); distortion is undistorted when rays are made. COLMAP's pixel convention (centre
of the top-left pixel at (0.5, 0.5)) is ours.

Poses: images store the world-to-camera rotation (quaternion qw, qx, qy, qz) and translation of
an OpenCV camera (x right, y down, looking down +z): camera-to-world is [R^T | -R^T t], and
flipping its y and z axes gives our OpenGL convention. Frames are ordered by image name; the
cameras are centred and scaled from their positions (see `datasets.captures`), and near/far
come from the depths of the points each image sees (0.1 and 99.9 percentiles, as LLFF's
imgs2poses does, widened by 10%).
"""
from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from nerf.datasets.captures import Frame, build_scene, capped_downscale, lens_row
from nerf.datasets.errors import DatasetError
from nerf.datasets.options import DataOptions
from nerf.datasets.scene import Scene

MODEL_DIRS = ("sparse/0", "sparse", "colmap/sparse/0", ".")
SUPPORTED = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "SIMPLE_RADIAL_FISHEYE",
             "RADIAL_FISHEYE", "OPENCV_FISHEYE")


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


# ------------------------------------------------------------------------------------ reading

def _images_txt_with_points_lines(path: Path) -> str | None:
    """images.txt with an (empty) POINTS2D line after each image that lacks one, or None when
    every image has its line. A line after an image's header is its POINTS2D line when it
    parses as (X, Y, POINT3D_ID) triples; otherwise it is the next image."""
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    out, i, patched = [], 0, False
    while i < len(lines):
        out.append(lines[i])
        nxt = lines[i + 1].split() if i + 1 < len(lines) else []
        try:
            if not nxt or len(nxt) % 3:
                raise ValueError
            [(float(x), float(y), int(p)) for x, y, p in zip(nxt[0::3], nxt[1::3], nxt[2::3])]
            out.append(lines[i + 1])
            i += 2
        except ValueError:
            out.append("")
            patched = True
            i += 1
    return "\n".join(out) + "\n" if patched else None


def _read_reconstruction(model_dir: Path, ext: str):
    """The model in `model_dir` as a `pycolmap.Reconstruction`; a one-line error if it does not read."""
    import pycolmap

    points = model_dir / f"points3D.{ext}"
    images_txt = _images_txt_with_points_lines(model_dir / "images.txt") if ext == "txt" else None
    with tempfile.TemporaryDirectory(prefix="colmap-") as tmp:
        src = model_dir
        if images_txt is not None or not points.is_file():
            src = Path(tmp)
            for f in model_dir.iterdir():
                if f.is_file() and f.suffix == f".{ext}":
                    shutil.copyfile(f, src / f.name)
            if images_txt is not None:
                (src / "images.txt").write_text(images_txt)
            if not points.is_file():
                if ext == "bin":
                    (src / points.name).write_bytes(struct.pack("<Q", 0))
                else:
                    (src / points.name).write_text("")
        rec = pycolmap.Reconstruction()
        try:
            rec.read_binary(src) if ext == "bin" else rec.read_text(src)
        except Exception as exc:  # noqa: BLE001 - pycolmap raises ValueError, IndexError, RuntimeError...
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            raise DatasetError(f"{model_dir}: cannot read the COLMAP model in .{ext} (a corrupt or unfinished model: "
                               f"{first})") from None
    return rec


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
    """fx, fy, cx, cy and the lens row: (k1, k2, p1, p2), or `lens_row`'s fisheye row (None when
    there is no distortion; a fisheye always has its row, which marks it as one)."""
    if model.endswith("FISHEYE"):
        if model == "OPENCV_FISHEYE":
            fx, fy, cx, cy, k1, k2, k3, k4 = params
        else:
            fx, cx, cy, k1, *rest = params
            fy, k2, k3, k4 = fx, (rest[0] if rest else 0.0), 0.0, 0.0
        return fx, fy, cx, cy, lens_row(k1=k1, k2=k2, k3=k3, k4=k4, fisheye=True)
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


def image_records(rec) -> list[dict]:
    """Per registered image of a `pycolmap.Reconstruction`, sorted by name: id, qvec (w, x, y, z),
    tvec (3,), camera_id, name, point3d_ids (m,) of the points it sees and xy (m, 2), where it sees
    them (pixels of the camera's full size, COLMAP's convention; id -1: a keypoint with no point)."""
    out = []
    for image_id in rec.reg_image_ids():
        im = rec.images[image_id]
        pose = im.cam_from_world()
        x, y, z, w = np.asarray(pose.rotation.quat, dtype=np.float64)
        obs = im.get_observation_points2D()
        ids = np.array([p.point3D_id for p in obs], dtype=np.int64)
        xy = np.array([p.xy for p in obs], dtype=np.float64).reshape(-1, 2)
        out.append({"id": int(image_id), "qvec": np.array([w, x, y, z]),
                    "tvec": np.asarray(pose.translation, dtype=np.float64), "camera_id": int(im.camera_id),
                    "name": im.name, "point3d_ids": ids, "xy": xy})
    return sorted(out, key=lambda im: im["name"])


def _seen(im: dict, sorted_ids: np.ndarray, order: np.ndarray, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which of image `im`'s observations hold a point of the model (m,) and those points (k, 3)."""
    ids = im["point3d_ids"]
    pos = np.searchsorted(sorted_ids, ids)
    ok = (pos < len(sorted_ids)) & (sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == ids)
    return ok, xyz[order[pos[ok]]]


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
        ok, pts = _seen(im, sorted_ids, order, xyz)
        if not ok.any():
            continue
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


MIN_TRACK = 3  # images that must see a point for its keypoints to give sparse depth
MAX_ERROR_RATIO = 2.0  # and its reprojection error at most this many times the model's median


def reliable_points(rec) -> tuple[np.ndarray, np.ndarray]:
    """The ids (m,) and positions (m, 3) of a model's points that sparse depth may trust: seen by
    at least MIN_TRACK images, with a reprojection error at most MAX_ERROR_RATIO times the median.
    Points seen twice, or fitted badly, are where mismatches end up (on a desk, points that
    structure from motion put under its top), and a depth loss would carve the surface to
    reach them."""
    pts = list(rec.points3D.items())
    if not pts:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 3))
    err = np.array([p.error for _, p in pts], dtype=np.float64)
    keep = (np.array([p.track.length() for _, p in pts]) >= MIN_TRACK) & (err <= MAX_ERROR_RATIO * np.median(err))
    ids = np.array([i for i, _ in pts], dtype=np.int64)[keep]
    return ids, np.array([p.xyz for _, p in pts], dtype=np.float64).reshape(-1, 3)[keep]


def keypoints(images: list[dict], point_ids: np.ndarray, xyz: np.ndarray) -> list[np.ndarray | None]:
    """Per image, where it sees the model's points: (k, 5) rows x, y (pixels of the camera's full
    size), X, Y, Z (the point in the model's world), for the points (`reliable_points`) in front of
    the camera; None for an image that sees none. The training's sparse depth
    (`Scene.sparse_depth`) comes from these."""
    if len(point_ids) == 0:
        return [None] * len(images)
    order = np.argsort(point_ids)
    sorted_ids = point_ids[order]
    out = []
    for im in images:
        ok, pts = _seen(im, sorted_ids, order, xyz)
        front = (pts @ qvec_to_rotmat(im["qvec"])[2] + im["tvec"][2]) > 0
        rows = np.concatenate([im["xy"][ok], pts], axis=1)[front]
        out.append(rows if len(rows) else None)
    return out


def model_keypoints(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """The keypoints of the COLMAP model beside a capture file (process-data and nerfstudio write
    sparse/0 next to transforms.json): image name -> (camera centre (3,), keypoints (k, 5) as
    `keypoints` gives them, both in the model's world, and the width of the image the keypoints'
    pixels are of); empty without a readable model or points."""
    found = find_model(root)
    if found is None:
        return {}
    try:
        rec = _read_reconstruction(*found)
    except Exception:  # a broken model beside a transforms.json is not what training reads
        return {}
    images = image_records(rec)
    out = {}
    for im, seen in zip(images, keypoints(images, *reliable_points(rec))):
        if seen is not None:
            out[im["name"]] = (colmap_to_c2w(im["qvec"], im["tvec"])[:3, 3], seen, int(rec.cameras[im["camera_id"]].width))
    return out


def load_colmap(root: Path, split: str, opts: DataOptions) -> Scene:
    found = find_model(root)
    if found is None:
        raise DatasetError(f"{root}: no COLMAP model (cameras and images .bin or .txt) in "
                           f"{', '.join(MODEL_DIRS)}")
    model_dir, ext = found
    rec = _read_reconstruction(model_dir, ext)
    cams = {}
    for cam_id, cam in rec.cameras.items():
        model = cam.model.name
        if model not in SUPPORTED:
            raise DatasetError(f"{model_dir / f'cameras.{ext}'}: camera {cam_id} uses the {model} model; "
                               f"supported: {', '.join(SUPPORTED)}")
        cams[cam_id] = (model, int(cam.width), int(cam.height), np.asarray(cam.params, dtype=np.float64))
    images = image_records(rec)
    if not images:
        raise DatasetError(f"{model_dir / f'images.{ext}'}: no registered images")
    point_ids = np.array(list(rec.points3D.keys()), dtype=np.int64)
    xyz = np.array([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)

    used = {im["camera_id"] for im in images}
    k = capped_downscale(opts, max(cams[c][1] for c in used), max(cams[c][2] for c in used))
    image_dir, factor = root / "images", k
    if k > 1 and (root / f"images_{k}").is_dir():
        image_dir, factor = root / f"images_{k}", 1
    if not image_dir.is_dir():
        raise DatasetError(f"{image_dir}: image folder not found (COLMAP model in {model_dir})")

    frames = []
    for im, seen in zip(images, keypoints(images, *reliable_points(rec))):
        model, w, h, params = cams[im["camera_id"]]
        fx, fy, cx, cy, dist = intrinsics(model, params)
        frames.append(Frame(path=image_dir / im["name"], c2w=colmap_to_c2w(im["qvec"], im["tvec"]),
                            fx=fx, fy=fy, cx=cx, cy=cy, width=w, height=h, distortion=dist, keypoints=seen))
    bbox = None
    if len(xyz) >= 8:
        bbox = np.percentile(xyz, [1.0, 99.0], axis=0)
    return build_scene(root, "colmap", frames, split, opts, model_dir / f"images.{ext}",
                       bbox=bbox, depth_range=depth_range(images, point_ids, xyz), downscale=factor,
                       metadata={"model": str(model_dir), "n_points": int(len(xyz)),
                                 "max_side_capped": k > opts.downscale})
