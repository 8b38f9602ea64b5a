"""Instant-NGP / nerfstudio captures: one transforms.json beside the images.

The file holds `frames`, each with a `file_path` (relative to the file's folder; without an
extension, .png is tried) and a `transform_matrix` (OpenGL camera-to-world, 4x4 or 3x4).
Intrinsics may be given once at the top level or per frame (a frame's value wins):
- fl_x, fl_y (focal lengths in pixels), or camera_angle_x / camera_angle_y (field of view in
  radians); fy defaults to fx;
- cx, cy (default: the image centre); w, h (default: the image file's size; when the files
  are stored at another size the intrinsics are scaled to them);
- k1, k2, p1, p2: OpenCV radial-tangential distortion, undistorted when rays are made; k3, k4
  and camera_model OPENCV_FISHEYE / EQUIRECTANGULAR are refused rather than ignored.
Optional keys: aabb_scale (with Instant-NGP's scale and offset, the box holding the content:
[0.5 - aabb_scale / 2, 0.5 + aabb_scale / 2]^3 in Instant-NGP's space; without it, the unit cube
after normalising), a per-frame mask_path (nerfstudio; white = use, black = ignore), and
nerfstudio's train_filenames / val_filenames / test_filenames as the split. Without them, frames
are ordered by file_path and every data.holdout_every-th (0, 8, 16, ...) is held out for test and
val. Cameras are centred and scaled as `datasets.captures` describes.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from nerf.datasets.blender import read_json
from nerf.datasets.captures import Frame, build_scene
from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import check_image_file, unreadable
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import to_homogeneous
from nerf.datasets.scene import Scene

FILE = "transforms.json"
NGP_SCALE, NGP_OFFSET = 0.33, (0.5, 0.5, 0.5)
UNSUPPORTED_MODELS = ("OPENCV_FISHEYE", "EQUIRECTANGULAR", "FISHEYE")


def is_transforms_json(root: Path) -> bool:
    return (root / FILE).is_file()


def _number(value, key: str, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{path}: {where} '{key}' must be a finite number, got {value!r}")
    return float(value)


def _image_path(root: Path, file_path: str) -> Path:
    p = root / file_path
    if p.suffix or p.is_file():
        return p
    return p.with_name(p.name + ".png")


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding all of it where the format allows."""
    import imageio.v3 as iio

    check_image_file(path)
    try:
        props = iio.improps(path)
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for corrupt files
        raise unreadable(path, exc) from None
    return int(props.shape[1]), int(props.shape[0])


def frame_from_json(root: Path, path: Path, meta: dict, fr: dict, k: int) -> Frame:
    """Frame number `k` of the file: its pose and intrinsics (frame keys over top-level keys)."""
    where = f"frame {k}"
    if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
        raise DatasetError(f"{path}: {where} needs 'file_path' and 'transform_matrix'")
    get = lambda key: fr.get(key, meta.get(key))  # noqa: E731
    model = get("camera_model")
    if isinstance(model, str) and model.upper() in UNSUPPORTED_MODELS:
        raise DatasetError(f"{path}: camera_model {model} is not supported (pinhole with OPENCV distortion only)")
    try:
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {where} 'transform_matrix' has non-numeric entries") from None
    if m.shape not in ((4, 4), (3, 4)):
        raise DatasetError(f"{path}: {where} 'transform_matrix' must be 4x4, got shape {m.shape}")
    image = _image_path(root, str(fr["file_path"]))

    w, h = get("w"), get("h")
    if w is None or h is None:
        w, h = _image_size(image)
    w, h = int(_number(w, "w", where, path)), int(_number(h, "h", where, path))
    if w < 1 or h < 1:
        raise DatasetError(f"{path}: {where} image size {w}x{h} must be positive")
    def focal(axis: str, size: int) -> float | None:
        """fl_<axis> if given, else from camera_angle_<axis> and the image size, else None."""
        if get(f"fl_{axis}") is not None:
            return _number(get(f"fl_{axis}"), f"fl_{axis}", where, path)
        if get(f"camera_angle_{axis}") is None:
            return None
        a = _number(get(f"camera_angle_{axis}"), f"camera_angle_{axis}", where, path)
        if not 0 < a < math.pi:
            raise DatasetError(f"{path}: {where} 'camera_angle_{axis}' must be in (0, pi), got {a}")
        return 0.5 * size / math.tan(0.5 * a)

    fx, fy = focal("x", w), focal("y", h)
    if fx is None and fy is None:
        raise DatasetError(f"{path}: {where} has no focal length (fl_x / fl_y or camera_angle_x / camera_angle_y)")
    fx = fy if fx is None else fx
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise DatasetError(f"{path}: {where} focal lengths must be positive, got {fx}, {fy}")
    cx = _number(get("cx"), "cx", where, path) if get("cx") is not None else w / 2.0
    cy = _number(get("cy"), "cy", where, path) if get("cy") is not None else h / 2.0
    for key in ("k3", "k4"):
        if get(key) not in (None, 0, 0.0):
            raise DatasetError(f"{path}: {where} '{key}' = {get(key)} is not supported (k1, k2, p1, p2 only)")
    coeffs = np.array([_number(get(c), c, where, path) if get(c) is not None else 0.0
                       for c in ("k1", "k2", "p1", "p2")])
    mask = fr.get("mask_path")
    return Frame(path=image, c2w=to_homogeneous(m[None, :3])[0].astype(np.float64), fx=fx, fy=fy, cx=cx, cy=cy,
                 width=w, height=h, distortion=coeffs if np.any(coeffs != 0) else None,
                 mask=None if mask is None else root / str(mask))


def _named_split(meta: dict, frames: list[dict], path: Path) -> dict[str, list[int]] | None:
    """nerfstudio's train_filenames / val_filenames / test_filenames as frame indices, or None."""
    keys = {s: f"{s}_filenames" for s in ("train", "val", "test")}
    if not any(k in meta for k in keys.values()):
        return None
    norm = lambda p: str(Path(str(p)).as_posix()).removeprefix("./")  # noqa: E731
    where = {norm(fr["file_path"]): i for i, fr in enumerate(frames)}
    out = {}
    for split, key in keys.items():
        names = meta.get(key)
        if names is None:
            continue
        if not isinstance(names, list):
            raise DatasetError(f"{path}: '{key}' must be a list of file paths")
        missing = [n for n in names if norm(n) not in where]
        if missing:
            raise DatasetError(f"{path}: '{key}' names {missing[0]!r}, which no frame has as file_path")
        out[split] = [where[norm(n)] for n in names]
    if "val" not in out and "test" in out:
        out["val"] = out["test"]
    if "test" not in out and "val" in out:
        out["test"] = out["val"]
    return out


def ngp_box(meta: dict, path: Path) -> np.ndarray | None:
    """The content box (2, 3) in the file's world from aabb_scale, scale and offset, or None."""
    if "aabb_scale" not in meta:
        return None
    a = _number(meta["aabb_scale"], "aabb_scale", "top level", path)
    s = _number(meta.get("scale", NGP_SCALE), "scale", "top level", path)
    off = np.asarray(meta.get("offset", NGP_OFFSET), dtype=np.float64)
    if a <= 0 or s <= 0 or off.shape != (3,):
        raise DatasetError(f"{path}: aabb_scale and scale must be positive and offset a 3-vector")
    # Instant-NGP maps a point p to p * scale + offset (then cycles the axes, which leaves a cube
    # centred on (0.5, 0.5, 0.5) unchanged) and bounds the scene by that cube of side aabb_scale
    return np.stack([(0.5 - a / 2 - off) / s, (0.5 + a / 2 - off) / s])


def load_transforms_json(root: Path, split: str, opts: DataOptions) -> Scene:
    path = root / FILE
    meta = read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: 'frames' must be a non-empty list")
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr:
            raise DatasetError(f"{path}: frame {k} needs 'file_path' and 'transform_matrix'")
    parsed = [frame_from_json(root, path, meta, fr, k) for k, fr in enumerate(frames)]
    order = sorted(range(len(frames)), key=lambda k: str(frames[k]["file_path"]))
    frames, parsed = [frames[k] for k in order], [parsed[k] for k in order]
    named = _named_split(meta, frames, path)
    return build_scene(root, "transforms", parsed, split, opts, path, named=named, bbox=ngp_box(meta, path),
                       metadata={"aabb_scale": meta.get("aabb_scale")})
