"""Instant-NGP / nerfstudio captures: one transforms.json beside the images.

The file is `transforms.json`, or a lone `transforms_train.json` that holds frames (instant-ngp's
scripts write that name; with a transforms_val.json or transforms_test.json beside it the folder
is Blender's). It holds `frames`, each with a `file_path` (relative to the file's folder or
absolute; without an extension, .png, .jpg, ... are tried; Windows separators are accepted) and a
`transform_matrix` (OpenGL camera-to-world, 4x4 or 3x4). Camera keys may be given once at the top
level or per frame (a frame's value wins):
- fl_x, fl_y (focal lengths in pixels), or camera_angle_x / camera_angle_y (field of view in
  radians); fy defaults to fx;
- cx, cy (default: the image centre); w, h (default: the image file's size);
- the lens: camera_model (nerfstudio) OPENCV, PINHOLE, SIMPLE_PINHOLE, SIMPLE_RADIAL, RADIAL
  (perspective, OpenCV radial-tangential k1 k2 k3 p1 p2) or OPENCV_FISHEYE (equidistant, k1-k4),
  and instant-ngp's `is_fisheye`; the coefficients as keys k1 k2 k3 k4 p1 p2 or as nerfstudio's
  `distortion_params` list [k1, k2, k3, k4, p1, p2] (which wins over the keys at the same level).
  Any other model (FISHEYE624, EQUIRECTANGULAR, instant-ngp's ftheta / latlong / equirectangular
  lenses, ...), k4 on a perspective camera and p1 / p2 on a fisheye one are refused in one line.
  Rays are made through the lens (`render.distortion`).
Image files: nerfstudio keeps smaller copies in images_N folders (images/x.jpg -> images_N/x.jpg)
and reads them for its downscale_factor N. With data.downscale = N such a folder is read when it
holds the images (else the originals are area-downscaled by N); when the originals are missing,
the images_M folder with the largest M dividing data.downscale is read and area-downscaled by
the rest, or, when none divides it, the copy nearest in size below the one asked for (a
capture shipped as images_4 only loads at 1/4 with data.downscale 1, 2 or 4). The intrinsics
(which describe the originals) are scaled to the images read.
Per-frame image sizes may differ in the file as long as the images read share one size.
Content box: `aabb` [[x, y, z], [x, y, z]] (an explicit box in the file's world; with aabb_scale
too, instant-ngp's cube of aabb_scale times its longest side around its centre); else aabb_scale
(with instant-ngp's scale and offset: [0.5 - aabb_scale / 2, 0.5 + aabb_scale / 2]^3 in
instant-ngp's space); else the 1st-99th percentile box of the sparse points in the PLY file that
`ply_file_path` names (nerfstudio; ASCII or binary little-endian); else where the training
cameras' view frusta meet (`poses.frusta_box`). metadata['box_source'] says which. With the
PLY's points, near/far come from the points in each camera's view (`poses.points_depth_range`).
Sparse depth: when a COLMAP model of the same photos lies beside the file (process-data and
nerfstudio write sparse/0), its keypoints give the frames' `Scene.sparse_depth`, moved into the
file's world by `applied_transform` (see `attach_model_keypoints`).
Masks: a frame's mask_path (nerfstudio: white = use, black = ignore; masks_N/ beside images_N/),
else instant-ngp's dynamic_mask_<image stem>.png beside the image (any non-black pixel is ignored).
Split: nerfstudio's train_filenames / val_filenames / test_filenames; without them, frames are
ordered by file_path and every data.holdout_every-th (0, 8, 16, ...) is held out for test and
val. Cameras are centred and scaled as `datasets.captures` describes.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from nerf.datasets.blender import read_json
from nerf.datasets.captures import Frame, build_scene, capped_downscale, lens_row
from nerf.datasets.colmap import model_keypoints
from nerf.datasets.errors import DatasetError
from nerf.datasets.imageops import check_image_file, unreadable
from nerf.datasets.options import DataOptions
from nerf.datasets.poses import points_depth_range, to_homogeneous
from nerf.datasets.scene import Scene

FILE = "transforms.json"
LONE_TRAIN_FILE = "transforms_train.json"
NGP_SCALE, NGP_OFFSET = 0.33, (0.5, 0.5, 0.5)
PERSPECTIVE_MODELS = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PERSPECTIVE")
FISHEYE_MODELS = ("OPENCV_FISHEYE",)
NGP_LENS_KEYS = {"ftheta_p0": "FTheta", "latlong": "LatLong", "equirectangular": "Equirectangular"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".bmp", ".tif", ".tiff")
COEFF_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")  # also nerfstudio's distortion_params order


def _holds_frames(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("frames"), list) and len(data["frames"]) > 0


def is_lone_train_capture(root: Path) -> bool:
    """A transforms_train.json with frames and no transforms_val.json / transforms_test.json beside
    it (and no transforms.json): an instant-ngp capture under Blender's file name."""
    return ((root / LONE_TRAIN_FILE).is_file() and not (root / FILE).is_file()
            and not (root / "transforms_val.json").is_file() and not (root / "transforms_test.json").is_file()
            and _holds_frames(root / LONE_TRAIN_FILE))


def transforms_file(root: Path) -> Path:
    """The capture's file: transforms.json, else a lone transforms_train.json."""
    return root / LONE_TRAIN_FILE if not (root / FILE).is_file() and is_lone_train_capture(root) else root / FILE


def is_transforms_json(root: Path) -> bool:
    return (root / FILE).is_file() or is_lone_train_capture(root)


def _number(value, key: str, where: str, path: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DatasetError(f"{path}: {where} '{key}' must be a finite number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------------- image files

def _with_suffix(p: Path) -> Path:
    """p itself when it exists or has an extension, else p + the first image extension that exists
    (p + .png when none does, for the error)."""
    try:
        if p.suffix or p.is_file():
            return p
        for ext in IMAGE_SUFFIXES:
            if p.with_name(p.name + ext).is_file():
                return p.with_name(p.name + ext)
    except (OSError, ValueError):  # names no filesystem accepts: reported as not found later
        return p
    return p.with_name(p.name + ".png")


def _image_path(root: Path, file_path: str) -> Path:
    return _with_suffix(root / str(file_path).replace("\\", "/"))


def _in_folder(root: Path, path: Path, prefix: str, n: int) -> list[Path]:
    """Where nerfstudio keeps the 1/n copy of `path` (images/x.jpg -> images_n/x.jpg; a file
    elsewhere -> images_n/<its name>): the candidates, most specific first."""
    out = []
    try:
        rel = path.relative_to(root)
        if len(rel.parts) > 1 and rel.parts[0] == prefix:
            out.append(root / f"{prefix}_{n}" / Path(*rel.parts[1:]))
    except ValueError:
        pass
    out.append(root / f"{prefix}_{n}" / path.name)
    return out


def _find_in_folder(root: Path, path: Path, prefix: str, n: int) -> Path | None:
    for cand in _in_folder(root, path, prefix, n):
        for p in (cand, *(cand.with_suffix(ext) for ext in IMAGE_SUFFIXES if cand.suffix != ext)):
            try:
                if p.is_file():
                    return p
            except (OSError, ValueError):
                return None
    return None


def _downscaled_folders(root: Path, prefix: str = "images") -> list[int]:
    """The factors n of the prefix_n folders in root, ascending."""
    pat = re.compile(rf"{re.escape(prefix)}_(\d+)")
    found = []
    for p in root.iterdir():
        m = pat.fullmatch(p.name)
        if m and p.is_dir() and int(m.group(1)) > 1:
            found.append(int(m.group(1)))
    return sorted(found)


def image_factor(root: Path, first: Path, want: int) -> tuple[int, int]:
    """(folder factor N, area factor) reading the capture's images at 1/want of full size, decided
    on its first image (see the module docstring); N = 1 is the file paths as written."""
    def exists(p: Path) -> bool:
        try:
            return p.is_file()
        except (OSError, ValueError):
            return False

    if want > 1 and _find_in_folder(root, first, "images", want) is not None:
        return want, 1
    if exists(first):
        return 1, want
    have = [m for m in _downscaled_folders(root) if _find_in_folder(root, first, "images", m) is not None]
    if not have:
        return 1, want  # the missing file is reported when read
    dividing = [m for m in have if want % m == 0]
    if dividing:
        return dividing[-1], want // dividing[-1]
    if want == 1:
        return have[0], 1
    smaller = [m for m in have if m > want]  # only smaller copies: the nearest to the size asked for
    if smaller:
        return smaller[0], 1
    raise DatasetError(f"{first}: image file not found, and data.downscale={want} is not a multiple of the "
                       f"downscaled copies present ({', '.join(f'images_{m}' for m in have)}); "
                       f"set data.downscale to one of {', '.join(str(m) for m in have)} or a multiple")


def _full_size(root: Path, meta: dict, frame: dict, original: Path) -> tuple[int | None, int | None]:
    """(width, height) of a frame's original image: its w and h keys (the frame's, else the
    file's), else the original file's size, else an images_N copy's times N; (None, None) when
    nothing tells (the caller then keeps data.downscale)."""
    w, h = frame.get("w", meta.get("w")), frame.get("h", meta.get("h"))
    if isinstance(w, (int, float)) and isinstance(h, (int, float)):
        return int(w), int(h)
    for m in [1] + _downscaled_folders(root):
        image = original if m == 1 else _find_in_folder(root, original, "images", m)
        try:
            found = image is not None and image.is_file()
        except (OSError, ValueError):
            found = False
        if found:
            fw, fh = _image_size(image)
            return fw * m, fh * m
    return None, None


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding all of it where the format allows."""
    import imageio.v3 as iio

    check_image_file(path)
    try:
        props = iio.improps(path)
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for corrupt files
        raise unreadable(path, exc) from None
    return int(props.shape[1]), int(props.shape[0])


# ------------------------------------------------------------------------------------ lens

def _lens(get, has_frame_key, where: str, path: Path) -> tuple[np.ndarray | None, str]:
    """The lens row and model name of a frame; `get(key)` reads frame over top level and
    `has_frame_key(key)` says whether the frame itself has the key."""
    for key, name in NGP_LENS_KEYS.items():
        if get(key) is not None:
            raise DatasetError(f"{path}: {where} uses instant-ngp's {name} lens ('{key}'), which is not supported "
                               "(perspective OPENCV and OPENCV_FISHEYE only)")
    model = get("camera_model")
    if model is not None and not isinstance(model, str):
        raise DatasetError(f"{path}: {where} 'camera_model' must be a string, got {model!r}")
    name = None if model is None else model.strip().upper()
    if name is not None and name not in PERSPECTIVE_MODELS + FISHEYE_MODELS:
        raise DatasetError(f"{path}: camera_model {model} is not supported "
                           f"(supported: {', '.join(PERSPECTIVE_MODELS[:5] + FISHEYE_MODELS)})")
    ngp_fisheye = get("is_fisheye")
    if ngp_fisheye is not None and not isinstance(ngp_fisheye, bool):
        raise DatasetError(f"{path}: {where} 'is_fisheye' must be true or false, got {ngp_fisheye!r}")
    fisheye = name in FISHEYE_MODELS or bool(ngp_fisheye)
    if ngp_fisheye and name is not None and name not in FISHEYE_MODELS:
        raise DatasetError(f"{path}: {where} has is_fisheye true but camera_model {model}")

    def coeffs_from(params, level: str) -> dict[str, float]:
        if not isinstance(params, list) or len(params) != 6:
            raise DatasetError(f"{path}: {level} 'distortion_params' must be a list of 6 numbers "
                               f"[k1, k2, k3, k4, p1, p2], got {params!r}"[:300])
        return {k: _number(v, "distortion_params", level, path) for k, v in zip(COEFF_KEYS, params)}

    if has_frame_key("distortion_params"):
        c = coeffs_from(get("distortion_params"), where)
    elif not any(has_frame_key(k) for k in COEFF_KEYS) and get("distortion_params") is not None:
        c = coeffs_from(get("distortion_params"), "top level")
    else:
        c = {k: _number(get(k), k, where, path) if get(k) is not None else 0.0 for k in COEFF_KEYS}
    if fisheye:
        for k in ("p1", "p2"):
            if c[k] != 0:
                raise DatasetError(f"{path}: {where} '{k}' = {c[k]:g} on a fisheye camera (OPENCV_FISHEYE has "
                                   "k1-k4 only)")
        row = lens_row(k1=c["k1"], k2=c["k2"], k3=c["k3"], k4=c["k4"], fisheye=True)
        return row, "OPENCV_FISHEYE"
    if c["k4"] != 0:
        raise DatasetError(f"{path}: {where} 'k4' = {c['k4']:g} is not supported on a perspective camera "
                           "(OPENCV: k1, k2, k3, p1, p2)")
    row = lens_row(k1=c["k1"], k2=c["k2"], p1=c["p1"], p2=c["p2"], k3=c["k3"])
    return row, "OPENCV" if row is not None else "PINHOLE"


# ------------------------------------------------------------------------------------ frames

def frame_from_json(root: Path, path: Path, meta: dict, fr: dict, k: int, folder: int = 1) -> tuple[Frame, str]:
    """Frame number `k` of the file (frame keys over top-level keys) and its camera model name;
    `folder` > 1 reads the image from nerfstudio's images_<folder> copy."""
    where = f"frame {k}"
    if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
        raise DatasetError(f"{path}: {where} needs 'file_path' and 'transform_matrix'")
    get = lambda key: fr.get(key, meta.get(key))  # noqa: E731
    distortion, model = _lens(get, lambda key: key in fr, where, path)
    try:
        m = np.asarray(fr["transform_matrix"], dtype=np.float64)
    except (TypeError, ValueError):
        raise DatasetError(f"{path}: {where} 'transform_matrix' has non-numeric entries") from None
    if m.shape not in ((4, 4), (3, 4)):
        raise DatasetError(f"{path}: {where} 'transform_matrix' must be 4x4, got shape {m.shape}")
    original = _image_path(root, fr["file_path"])
    image = original
    if folder > 1:
        image = _find_in_folder(root, original, "images", folder)
        if image is None:
            raise DatasetError(f"{_in_folder(root, original, 'images', folder)[0]}: image file not found "
                               f"(the capture's images are read from images_{folder}/)")

    w, h = get("w"), get("h")
    if w is None or h is None:
        fw, fh = _image_size(image)
        w, h = fw * folder, fh * folder
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

    mask, ignores = None, False
    if fr.get("mask_path") is not None:
        mask = _image_path(root, fr["mask_path"])
        if folder > 1:
            mask = _find_in_folder(root, mask, "masks", folder) or mask
    else:
        for img in dict.fromkeys((image, original)):
            cand = img.with_name(f"dynamic_mask_{img.stem}.png")
            try:
                if cand.is_file():
                    mask, ignores = cand, True
                    break
            except (OSError, ValueError):
                pass
    frame = Frame(path=image, c2w=to_homogeneous(m[None, :3])[0].astype(np.float64), fx=fx, fy=fy, cx=cx, cy=cy,
                  width=w, height=h, distortion=distortion, mask=mask, mask_ignores=ignores)
    return frame, model


def _named_split(meta: dict, frames: list[dict], path: Path) -> dict[str, list[int]] | None:
    """nerfstudio's train_filenames / val_filenames / test_filenames as frame indices, or None."""
    keys = {s: f"{s}_filenames" for s in ("train", "val", "test")}
    if not any(k in meta for k in keys.values()):
        return None
    norm = lambda p: str(Path(str(p).replace("\\", "/")).as_posix()).removeprefix("./")  # noqa: E731
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


# ------------------------------------------------------------------------------------ content box

def _vector3(value, key: str, path: Path) -> np.ndarray:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    try:
        v = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        v = np.zeros(0)
    if v.shape != (3,) or not np.all(np.isfinite(v)):
        raise DatasetError(f"{path}: '{key}' must be a number or 3 numbers, got {value!r}"[:300])
    return v


def ngp_box(meta: dict, path: Path) -> np.ndarray | None:
    """The content box (2, 3) in the file's world from aabb_scale, scale and offset, or None."""
    if "aabb_scale" not in meta:
        return None
    a = _number(meta["aabb_scale"], "aabb_scale", "top level", path)
    s = _number(meta.get("scale", NGP_SCALE), "scale", "top level", path)
    off = _vector3(meta.get("offset", NGP_OFFSET), "offset", path)
    if a <= 0 or s <= 0:
        raise DatasetError(f"{path}: aabb_scale and scale must be positive")
    # Instant-NGP maps a point p to p * scale + offset (then cycles the axes, which leaves a cube
    # centred on (0.5, 0.5, 0.5) unchanged) and bounds the scene by that cube of side aabb_scale
    return np.stack([(0.5 - a / 2 - off) / s, (0.5 + a / 2 - off) / s])


def aabb_box(meta: dict, path: Path) -> np.ndarray | None:
    """The file's `aabb` (2, 3), or None; with aabb_scale, instant-ngp's cube: aabb_scale times the
    box's longest side, around its centre."""
    if "aabb" not in meta:
        return None
    try:
        box = np.asarray(meta["aabb"], dtype=np.float64)
    except (TypeError, ValueError):
        box = np.zeros(0)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
        raise DatasetError(f"{path}: 'aabb' must be [[min x, y, z], [max x, y, z]] with min < max, "
                           f"got {meta['aabb']!r}"[:300])
    if "aabb_scale" not in meta:
        return box
    a = _number(meta["aabb_scale"], "aabb_scale", "top level", path)
    if a <= 0:
        raise DatasetError(f"{path}: aabb_scale must be positive")
    centre, side = box.mean(0), float((box[1] - box[0]).max())
    return np.stack([centre - a * side / 2, centre + a * side / 2])


PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
             "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_xyz(path: Path) -> np.ndarray:
    """The x, y, z of the vertices (m, 3) of a PLY file (ASCII or binary little-endian); the vertex
    element must come first or after elements without list properties. One-line errors."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from None
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DatasetError(f"{path}: not a PLY file (no 'ply' ... 'end_header' header)")
    body = data.index(b"\n", end) + 1 if b"\n" in data[end:] else len(data)
    header = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []  # [name, count, [(name, type)], has_list]
    for line in header[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                elements.append([parts[1], int(parts[2]), [], False])
            elif parts[0] == "property" and elements:
                if parts[1] == "list":
                    elements[-1][3] = True
                else:
                    if parts[1] not in PLY_TYPES:
                        raise DatasetError(f"{path}: unknown PLY property type {parts[1]!r}")
                    elements[-1][2].append((parts[2], PLY_TYPES[parts[1]]))
        except (IndexError, ValueError):
            raise DatasetError(f"{path}: malformed PLY header line {line.strip()!r}") from None
    if fmt not in ("ascii", "binary_little_endian"):
        raise DatasetError(f"{path}: PLY format {fmt} is not supported (ascii or binary_little_endian)")
    skip_rows, skip_bytes = 0, 0
    for name, count, props, has_list in elements:
        names = [p for p, _ in props]
        if name == "vertex":
            if not {"x", "y", "z"} <= set(names) or has_list:
                raise DatasetError(f"{path}: PLY vertices need x, y, z properties and no lists")
            if fmt == "ascii":
                rows = data[body:].decode("ascii", errors="replace").splitlines()[skip_rows:skip_rows + count]
                try:
                    table = np.array([[float(v) for v in r.split()[:len(names)]] for r in rows], dtype=np.float64)
                except ValueError:
                    raise DatasetError(f"{path}: malformed PLY vertex data") from None
                if table.shape != (count, len(names)):
                    raise DatasetError(f"{path}: PLY holds fewer vertices than its header's {count}")
                return table[:, [names.index(a) for a in "xyz"]]
            dtype = np.dtype([(p, "<" + t) for p, t in props])
            if len(data) < body + skip_bytes + dtype.itemsize * count:
                raise DatasetError(f"{path}: PLY truncated (header says {count} vertices)")
            rec = np.frombuffer(data, dtype=dtype, count=count, offset=body + skip_bytes)
            return np.stack([rec[a].astype(np.float64) for a in "xyz"], -1)
        if has_list:
            raise DatasetError(f"{path}: PLY element {name!r} with lists comes before the vertices")
        skip_rows += count
        skip_bytes += np.dtype([(p, "<" + t) for p, t in props]).itemsize * count
    raise DatasetError(f"{path}: PLY file has no vertex element")


def sparse_points(root: Path, meta: dict) -> np.ndarray | None:
    """The finite points (m, 3) of the PLY file `ply_file_path` names (nerfstudio), or None."""
    ply = meta.get("ply_file_path")
    if not (isinstance(ply, str) and ply):
        return None
    ply_path = root / ply.replace("\\", "/")
    if not ply_path.is_file():
        return None
    xyz = read_ply_xyz(ply_path)
    return xyz[np.all(np.isfinite(xyz), axis=1)]


def content_box(root: Path, meta: dict, path: Path, xyz: np.ndarray | None = None) -> tuple[np.ndarray | None, str]:
    """The box the file gives (aabb, aabb_scale) or its sparse points `xyz` give, and where it came
    from; (None, 'frusta') when neither does (the scene assembly then finds where the frusta meet)."""
    box = aabb_box(meta, path)
    if box is not None:
        return box, "aabb"
    box = ngp_box(meta, path)
    if box is not None:
        return box, "aabb_scale"
    if xyz is not None and len(xyz) >= 8:
        lo, hi = np.percentile(xyz, [1.0, 99.0], axis=0)
        if np.all(hi > lo):
            return np.stack([lo, hi]), "points"
    return None, "frusta"


# ------------------------------------------------------------------------------------ loader

def attach_model_keypoints(root: Path, meta: dict, frames: list[Frame], file_paths: list[str]) -> None:
    """Give the frames the keypoints of a COLMAP model beside the file (sparse depth), matched by
    image file name, with the points moved into the file's world by its `applied_transform`
    (nerfstudio's, else none). Only when every matched camera's centre agrees with the file's
    pose (the two describe one world) and its image width with the frame's: a model of other
    photos, of other image sizes, or of a world the file has moved in a way it does not state,
    is left unused."""
    found = model_keypoints(root)
    if not found:
        return
    move = np.eye(4)
    if "applied_transform" in meta:
        try:
            move[:3] = np.asarray(meta["applied_transform"], dtype=np.float64).reshape(-1, 4)[:3]
        except (TypeError, ValueError):
            return
    pairs = [(f, found.get(Path(fp.replace("\\", "/")).name) or found.get(f.path.name))
             for f, fp in zip(frames, file_paths)]
    pairs = [(f, got) for f, got in pairs if got is not None]
    if not pairs or any(got[2] != f.width for f, got in pairs):
        return
    ours = np.stack([f.c2w[:3, 3] for f, _ in pairs])
    theirs = np.stack([got[0] for _, got in pairs]) @ move[:3, :3].T + move[:3, 3]
    spread = max(float(np.ptp(ours, axis=0).max()), 1e-9)
    if float(np.abs(ours - theirs).max()) > 1e-3 * spread:
        return
    for f, (_, rows, _) in pairs:
        f.keypoints = np.concatenate([rows[:, :2], rows[:, 2:5] @ move[:3, :3].T + move[:3, 3]], axis=1)


def load_transforms_json(root: Path, split: str, opts: DataOptions) -> Scene:
    path = transforms_file(root)
    meta = read_json(path)
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise DatasetError(f"{path}: 'frames' must be a non-empty list")
    for k, fr in enumerate(frames):
        if not isinstance(fr, dict) or "file_path" not in fr or "transform_matrix" not in fr:
            raise DatasetError(f"{path}: frame {k} needs 'file_path' and 'transform_matrix'")
    order = sorted(range(len(frames)), key=lambda k: str(frames[k]["file_path"]).replace("\\", "/"))
    frames = [frames[k] for k in order]
    first = _image_path(root, frames[0]["file_path"])
    want = capped_downscale(opts, *_full_size(root, meta, frames[0], first))
    folder, area = image_factor(root, first, want)
    capped = False  # whether data.max_side changed the images read (not when only a smaller copy exists anyway)
    if want > opts.downscale:
        try:
            capped = image_factor(root, first, opts.downscale) != (folder, area)
        except DatasetError:  # the size asked for is not readable; the capped one is
            capped = True
    parsed = [frame_from_json(root, path, meta, fr, order[k], folder) for k, fr in enumerate(frames)]
    models = sorted({model for _, model in parsed})
    named = _named_split(meta, frames, path)
    attach_model_keypoints(root, meta, [f for f, _ in parsed], [str(fr["file_path"]) for fr in frames])
    xyz = sparse_points(root, meta)
    box, box_source = content_box(root, meta, path, xyz)
    depths = None
    if box_source == "points":  # the points also bound the rays, as a COLMAP model's do
        cams = [f for f, _ in parsed]
        depths = points_depth_range(np.stack([f.c2w for f in cams]),
                                    np.array([[f.fx, f.fy, f.cx, f.cy, f.width, f.height] for f in cams]), xyz)
    return build_scene(root, "transforms", [f for f, _ in parsed], split, opts, path, named=named, bbox=box,
                       depth_range=depths, downscale=area,
                       metadata={"aabb_scale": meta.get("aabb_scale"), "camera_model": ", ".join(models),
                                 "box_source": box_source, "file": path.name, "max_side_capped": capped,
                                 "image_folder": f"images_{folder}" if folder > 1 else None})
