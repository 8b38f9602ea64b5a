"""Photos or a video -> posed images: structure from motion with pycolmap, written in nerfstudio's
layout (the pipeline behind the process-data command).

Stages, each timed and shown with a progress bar:
1. frames: a video's frames, N spread evenly, the sharpest of each neighbourhood
   (`datasets.video_frames`), written as images/frame_00001.jpg, ...; photos are copied into
   images/ under their own names instead (stage `copy`);
2. extract: SIFT features (pycolmap.extract_features), one shared camera of the chosen model by
   default; run on a few images at a time so the bar moves and shows an ETA;
3. match: image pairs from COLMAP's pair generators, exhaustive or sequential (a video's frames:
   each with its 10 successors and those 2^k further on; no vocabulary tree is needed), matched
   and geometrically verified a block of pairs at a time (pycolmap.match_image_pairs);
4. map: incremental mapping with bundle adjustment (pycolmap.incremental_mapping); its bar
   counts image registrations as COLMAP reports them (a restarted model counts again, so the
   count is a guide, not exact); the largest model is kept and a split into several is warned of;
   a model that folds (neighbouring images facing opposite ways: `datasets.sfm_folds`) is mapped
   again from the pairs of images close in name order only, then with the loop closures that
   agree with that model put back, and the better kept;
5. write: DIR/sparse/0 (the COLMAP model), DIR/transforms.json, DIR/sparse_pc.ply,
   DIR/images_2, images_4, images_8 (area-averaged copies) and DIR/process_report.json.

transforms.json: camera_model (OPENCV for the perspective models, as nerfstudio writes it, or
OPENCV_FISHEYE), fl_x, fl_y, cx, cy, w, h and k1, k2, p1, p2 (k1-k4 for the fisheye) at the top
level (per frame with a camera per image), frames of the registered images in name order with
file_path (images/NAME) and transform_matrix (camera-to-world, OpenGL axes, in COLMAP's world),
and ply_file_path. Pixel centres sit at +0.5 in COLMAP and here.

Threads follow the machine (the CPUs this process may use). Ctrl-C stops extraction and matching
after the running chunk (seconds) and cancels mapping through pycolmap's token, then removes the
unfinished DIR and raises KeyboardInterrupt. Bad input raises DatasetError (one line): see
`check_photos` and `process_data`.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from nerf.datasets import sfm_focal, sfm_folds
from nerf.datasets.colmap import image_records, qvec_to_rotmat
from nerf.datasets.errors import DatasetError
from nerf.datasets.video_frames import VIDEO_SUFFIXES, is_video, pick_frames, video_info
from nerf.render.distortion import lens_focal

CAMERA_MODELS = ("OPENCV", "SIMPLE_RADIAL", "PINHOLE", "OPENCV_FISHEYE")
MATCHINGS = ("exhaustive", "sequential")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
EXHAUSTIVE_UP_TO = 300  # photos; a larger set is matched sequentially (in name order)
SEQUENTIAL_OVERLAP = 10
REMAP_TRIES = 2  # incremental mapping is random (RANSAC, threads): a remap that does no better gets another seed
DOWNSCALES = (2, 4, 8)
MIN_IMAGES = 3
JPEG_QUALITY = 95
WORK = ".colmap"  # the database and the mapper's models while running; removed at the end
REPORT = "process_report.json"
# COLMAP registers fisheye image pairs only with a focal length prior (it cannot recover the focal
# length of a fisheye from a fundamental matrix), which it takes from the photos' EXIF data or --fov
FISHEYE_HINT = " (a fisheye needs a focal length prior: photos whose EXIF data give it, or --fov)"


@dataclass
class ProcessOptions:
    """camera_model: one of CAMERA_MODELS; matching: exhaustive, sequential or auto (sequential for
    a video, exhaustive for up to EXHAUSTIVE_UP_TO photos); frames: how many frames to keep from a
    video; camera_per_image: a camera per image instead of one shared (images may then differ in
    size); focal_per_image: one shared camera for mapping, then a focal length per image
    (`sfm_focal`): on, off, or auto (photos: kept where it lowers the reprojection error by
    `sfm_focal.KEEP_GAIN`; a video's frames: off); seed: pycolmap's random seed; threads: 0 = the
    machine's; fov: the lens's horizontal field of view in degrees, a prior on the focal length for
    photos without EXIF data (0: none)."""

    camera_model: str = "OPENCV"
    matching: str = "auto"
    frames: int = 150
    camera_per_image: bool = False
    focal_per_image: str = "auto"
    overwrite: bool = False
    seed: int = 0
    threads: int = 0
    gpu: bool = False
    show_progress: bool = True
    colmap_log: bool = False
    stages: list = field(default_factory=list)
    fov: float = 0.0


def machine_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------ input

def list_photos(folder: Path) -> list[Path]:
    """The JPEG and PNG files directly in `folder`, by name."""
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES),
                  key=lambda p: p.name)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header; a one-line error if it does not read."""
    import imageio.v3 as iio

    try:
        shape = iio.improps(path).shape
    except Exception as exc:  # noqa: BLE001 - imageio raises many types for corrupt files
        text = str(exc).strip()
        raise DatasetError(f"{path}: cannot read image ({text.splitlines()[0] if text else type(exc).__name__})") \
            from None
    return int(shape[1]), int(shape[0])


def check_photos(folder: Path, single_camera: bool) -> tuple[list[Path], dict[str, tuple[int, int]]]:
    """The photos of `folder` and their sizes; one-line errors for none, fewer than 3, an
    unreadable one, and (with one shared camera) photos of different sizes."""
    photos = list_photos(folder)
    if not photos:
        raise DatasetError(f"{folder}: no images (looked for {', '.join(PHOTO_SUFFIXES)} files in the folder)")
    if len(photos) < MIN_IMAGES:
        raise DatasetError(f"{folder}: {len(photos)} image{'s' if len(photos) > 1 else ''}; structure from motion "
                           f"needs at least {MIN_IMAGES}")
    sizes = {p.name: image_size(p) for p in photos}
    if single_camera:
        first = photos[0].name
        for p in photos[1:]:
            if sizes[p.name] != sizes[first]:
                (w0, h0), (w, h) = sizes[first], sizes[p.name]
                raise DatasetError(f"{folder}: {p.name} is {w}x{h} but {first} is {w0}x{h0}; one shared camera needs "
                                   "one image size (resize them, or use a camera per image: --camera-per-image)")
    return photos, sizes


def check_output(source: Path, out: Path, overwrite: bool) -> None:
    """DIR must not exist (an empty folder is fine) unless `overwrite`, and must neither hold nor
    lie inside the input."""
    src, dst = source.resolve(), out.resolve()
    if dst == src or dst in src.parents or src in dst.parents:
        raise DatasetError(f"{out}: the output folder must lie outside the input {source} and not hold it")
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a folder")
        if any(out.iterdir()) and not overwrite:
            raise DatasetError(f"{out}: already exists; pass --overwrite to replace it")


# ------------------------------------------------------------------------------------ running

class _Progress:
    """A tqdm bar (or nothing) for one stage."""

    def __init__(self, show: bool, desc: str, total: int | None, unit: str):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"{desc:<8}", unit=unit, disable=not show, dynamic_ncols=True,
                        smoothing=0.1)

    def set(self, n: int) -> None:
        if self.bar.total is not None:
            n = min(n, self.bar.total)
        if n != self.bar.n:
            self.bar.n = n
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class _Runner:
    """Runs pycolmap calls off the main thread so Ctrl-C is seen at once. The chunked stages
    (extract, match) stop after the running chunk; mapping is cancelled through pycolmap's token.
    Either way the worker is waited for (a pycolmap call still running when the interpreter exits
    aborts it), then KeyboardInterrupt is raised."""

    def __init__(self):
        import pycolmap

        self.token = pycolmap.CancellationToken()
        self.stop = threading.Event()

    def check(self) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt

    def run(self, fn, cancel: bool = False):
        box: dict = {}
        done = threading.Event()

        def target():
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the main thread
                box["error"] = exc
            finally:
                done.set()

        # waited for on an Event, not Thread.join: an interrupted join can leave is_alive() wrong
        threading.Thread(target=target, name="process-data-stage", daemon=True).start()
        try:
            while not done.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop.set()
            if cancel:
                self.token.cancel()
            while not done.is_set():
                try:
                    done.wait(0.5)
                except KeyboardInterrupt:  # a second Ctrl-C: still wait, pycolmap must not be left running
                    pass
            raise KeyboardInterrupt from None
        if "error" in box:
            if self.stop.is_set() or isinstance(box["error"], InterruptedError):
                raise KeyboardInterrupt
            raise box["error"]
        return box.get("value")


def _catch_sigint(runner: _Runner) -> Callable[[], None]:
    """Ctrl-C also marks the run as stopping (so a video read cut short by ffmpeg's own exit reads
    as the interruption it is); returns the function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        runner.stop.set()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    return lambda: signal.signal(signal.SIGINT, previous)


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _extract(db: Path, image_dir: Path, names: list[str], opts: ProcessOptions, threads: int, runner: _Runner) -> None:
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = opts.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = threads
    extraction.use_gpu = opts.gpu
    mode = pycolmap.CameraMode.PER_IMAGE if opts.camera_per_image else pycolmap.CameraMode.SINGLE
    device = pycolmap.Device.cuda if opts.gpu else pycolmap.Device.cpu
    bar = _Progress(opts.show_progress, "extract", len(names), "img")

    def work():
        done = 0
        for chunk in _chunks(names, max(2 * threads, math.ceil(len(names) / 40))):
            runner.check()
            pycolmap.extract_features(db, image_dir, image_names=chunk, camera_mode=mode, reader_options=reader,
                                      extraction_options=extraction, device=device)
            if not opts.camera_per_image and reader.existing_camera_id < 0:
                database = pycolmap.Database.open(db)
                reader.existing_camera_id = database.read_all_cameras()[0].camera_id  # the shared camera
                database.close()
            done += len(chunk)
            bar.set(done)

    try:
        runner.run(work)
    finally:
        bar.close()
    if opts.fov:
        _set_focal_prior(db, opts.fov, opts.camera_model == "OPENCV_FISHEYE")


def _set_focal_prior(db: Path, fov: float, fisheye: bool) -> None:
    """Start every camera in the database at the focal length of `fov` and mark it a prior, as
    EXIF data would: COLMAP then registers pairs by their essential matrix."""
    import pycolmap

    database = pycolmap.Database.open(db)
    try:
        for cam in database.read_all_cameras():
            params = list(cam.params)
            for i in cam.focal_length_idxs():
                params[i] = lens_focal(fov, cam.width, fisheye)
            cam.params = params
            cam.has_prior_focal_length = True
            database.update_camera(cam)
    finally:
        database.close()


def _match(db: Path, work_dir: Path, matching: str, opts: ProcessOptions, threads: int, runner: _Runner) -> int:
    """Match and verify all pairs the generator names; returns the number of pairs."""
    import pycolmap

    database = pycolmap.Database.open(db)
    try:
        names = {im.image_id: im.name for im in database.read_all_images()}
        if matching == "exhaustive":
            gen = pycolmap.ExhaustivePairGenerator(pycolmap.ExhaustivePairingOptions(), database)
        else:
            pairing = pycolmap.SequentialPairingOptions()
            pairing.overlap = SEQUENTIAL_OVERLAP
            pairing.quadratic_overlap = True
            pairing.loop_detection = False
            gen = pycolmap.SequentialPairGenerator(pairing, database)
        pairs = [(names[a], names[b]) for a, b in gen.all_pairs()]
    finally:
        database.close()
    matcher = pycolmap.FeatureMatchingOptions()
    matcher.num_threads = threads
    matcher.use_gpu = opts.gpu
    device = pycolmap.Device.cuda if opts.gpu else pycolmap.Device.cpu
    bar = _Progress(opts.show_progress, "match", len(pairs), "pair")
    pair_file = work_dir / "pairs.txt"

    def work():
        done = 0
        for chunk in _chunks(pairs, min(256, max(64, math.ceil(len(pairs) / 50)))):
            runner.check()
            pair_file.write_text("".join(f"{a} {b}\n" for a, b in chunk))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = str(pair_file)
            pycolmap.match_image_pairs(db, matching_options=matcher, pairing_options=pairing, device=device)
            done += len(chunk)
            bar.set(done)

    try:
        runner.run(work)
    finally:
        bar.close()
    return len(pairs)


def _map(db: Path, image_dir: Path, work_dir: Path, n_images: int, opts: ProcessOptions, threads: int,
         runner: _Runner) -> dict:
    import pycolmap

    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = threads
    options.random_seed = opts.seed
    options.min_model_size = max(MIN_IMAGES, min(10, n_images // 2))
    options.ba_use_gpu = opts.gpu
    bar = _Progress(opts.show_progress, "map", n_images, "img")
    count = [0]

    def initial():
        count[0] += 2
        bar.set(count[0])

    def next_image():
        count[0] += 1
        bar.set(count[0])

    def work():
        return pycolmap.incremental_mapping(db, image_dir, work_dir / "sparse", options=options,
                                            initial_image_pair_callback=initial, next_image_callback=next_image,
                                            cancellation_token=runner.token)

    try:
        models = runner.run(work, cancel=True)
    finally:
        bar.close()
    return dict(models or {})


def _largest(models: dict):
    return max(models.values(), key=lambda r: r.num_reg_images()) if models else None


def _remap(db: Path, image_dir: Path, work_dir: Path, names: list[str], opts: ProcessOptions, threads: int,
           runner: _Runner) -> dict:
    """Incremental mapping again, into an emptied work_dir/sparse."""
    shutil.rmtree(work_dir / "sparse", ignore_errors=True)
    (work_dir / "sparse").mkdir()
    return _map(db, image_dir, work_dir, len(names), opts, threads, runner)


def _unfold(models: dict, db: Path, image_dir: Path, work_dir: Path, names: list[str], opts: ProcessOptions,
            threads: int, runner: _Runner, report: dict, log: Callable[[str], None],
            warn: Callable[[str], None]) -> dict:
    """A model that folds (`datasets.sfm_folds`) is mapped again from the pairs of images close in
    name order only (with another seed when that does no better, up to REMAP_TRIES maps); the new
    models replace the old when their largest registers as many images and folds less. Then the
    distant pairs that agree with it (loop closures) are put back and the images mapped once
    more, kept if that registers as many and folds no more. The report records the folds found at
    each stage."""
    rec = _largest(models)
    if rec is None:
        return models
    pairs = sfm_folds.verified_pairs(db)
    folds = sfm_folds.folded_pairs(rec, pairs, names, SEQUENTIAL_OVERLAP)
    report["folded_pairs"] = len(folds)
    if not sfm_folds.is_folded(folds):
        return models
    log(f"process-data: the model folds ({len(folds)} pairs of neighbouring images that share many matches face "
        f"opposite ways, a sign of symmetric or repeated structure); mapping again from neighbouring images only")
    dropped = sfm_folds.keep_near_pairs(db, names, SEQUENTIAL_OVERLAP)
    for attempt in range(REMAP_TRIES):
        again = _remap(db, image_dir, work_dir, names, replace(opts, seed=opts.seed + attempt), threads, runner)
        rec2 = _largest(again)
        folds2 = sfm_folds.folded_pairs(rec2, pairs, names, SEQUENTIAL_OVERLAP) if rec2 is not None else folds
        better = rec2 is not None and rec2.num_reg_images() >= rec.num_reg_images() and len(folds2) < len(folds)
        report["remap"] = {"pairs_dropped": len(dropped), "images_registered": rec2.num_reg_images() if rec2 else 0,
                           "folded_pairs": len(folds2), "kept": better, "tries": attempt + 1}
        if better:
            break
        log(f"process-data: the remap registered {rec2.num_reg_images() if rec2 else 0} images with {len(folds2)} "
            f"folded pairs, no better{'; mapping once more with another seed' if attempt + 1 < REMAP_TRIES else ''}")
    if better:
        log(f"process-data: remapped: {rec2.num_reg_images()} images, {len(folds2)} folded pairs")
        restored = sfm_folds.restore_pairs(db, dropped, rec2)
        closed = _remap(db, image_dir, work_dir, names, opts, threads, runner) if restored else {}
        rec3 = _largest(closed)
        folds3 = sfm_folds.folded_pairs(rec3, pairs, names, SEQUENTIAL_OVERLAP) if rec3 is not None else folds
        kept = rec3 is not None and rec3.num_reg_images() >= rec2.num_reg_images() and len(folds3) <= len(folds2)
        report["loop_closure"] = {"pairs_restored": restored, "images_registered": rec3.num_reg_images() if rec3 else 0,
                                  "folded_pairs": len(folds3), "kept": kept}
        if kept:
            log(f"process-data: {restored} loop-closing pairs put back: {rec3.num_reg_images()} images, "
                f"{len(folds3)} folded pairs")
            return closed
        return again
    warn(f"process-data: warning: the model folds ({len(folds)} pairs of neighbouring images face opposite ways) "
         f"and mapping neighbouring images only did not do better; its poses are likely wrong in places")
    return models


# ------------------------------------------------------------------------------------ writing

def camera_keys(cam) -> dict:
    """transforms.json's keys for a pycolmap camera (nerfstudio's naming: the perspective models as
    OPENCV with their coefficients, the fisheye as OPENCV_FISHEYE with k1-k4)."""
    model, p = cam.model.name, [float(v) for v in cam.params]
    keys = {"w": int(cam.width), "h": int(cam.height)}
    if model == "OPENCV_FISHEYE":
        fx, fy, cx, cy, k1, k2, k3, k4 = p
        return {"camera_model": "OPENCV_FISHEYE", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, **keys,
                "k1": k1, "k2": k2, "k3": k3, "k4": k4}
    if model == "OPENCV":
        fx, fy, cx, cy, k1, k2, p1, p2 = p
    elif model == "SIMPLE_RADIAL":
        (fx, cx, cy, k1), k2, p1, p2 = p, 0.0, 0.0, 0.0
        fy = fx
    elif model == "PINHOLE":
        (fx, fy, cx, cy), k1, k2, p1, p2 = p, 0.0, 0.0, 0.0, 0.0
    elif model == "SIMPLE_PINHOLE":
        (fx, cx, cy), k1, k2, p1, p2 = p, 0.0, 0.0, 0.0, 0.0
        fy = fx
    else:
        raise DatasetError(f"camera model {model} has no transforms.json form here (use one of {', '.join(CAMERA_MODELS)})")
    return {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, **keys,
            "k1": k1, "k2": k2, "p1": p1, "p2": p2}


def c2w_gl(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP's world-to-camera (OpenCV axes) -> camera-to-world 4x4 with OpenGL axes."""
    rot = qvec_to_rotmat(qvec)
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = rot.T, -rot.T @ tvec
    return c2w @ np.diag([1.0, -1.0, -1.0, 1.0])


def write_transforms(rec, out: Path, single_camera: bool) -> int:
    """DIR/transforms.json from a pycolmap.Reconstruction; returns the number of frames."""
    images = image_records(rec)
    frames = []
    for im in images:
        fr = {"file_path": f"images/{im['name']}", "transform_matrix": c2w_gl(im["qvec"], im["tvec"]).tolist(),
              "colmap_im_id": im["id"]}
        if not single_camera:
            fr.update(camera_keys(rec.cameras[im["camera_id"]]))
        frames.append(fr)
    if single_camera:
        meta = camera_keys(rec.cameras[images[0]["camera_id"]])
    else:
        meta = {"camera_model": camera_keys(rec.cameras[images[0]["camera_id"]])["camera_model"]}
    meta.update(frames=frames, ply_file_path="sparse_pc.ply")
    (out / "transforms.json").write_text(json.dumps(meta, indent=2))
    return len(frames)


def write_ply(rec, path: Path) -> int:
    """The model's 3D points as a binary PLY (x, y, z float, red, green, blue uchar); returns their count."""
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype="<f4").reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.uint8).reshape(-1, 3)
    rows = np.empty(len(pts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"),
                                     ("blue", "u1")])
    for i, a in enumerate("xyz"):
        rows[a] = xyz[:, i]
    for i, a in enumerate(("red", "green", "blue")):
        rows[a] = rgb[:, i]
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(pts)}\n"
              "property float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    path.write_bytes(header.encode("ascii") + rows.tobytes())
    return len(pts)


def area_downscale(img: np.ndarray, k: int) -> np.ndarray:
    """(H, W, C) uint8 averaged over k x k blocks (the edge rows and columns that do not fill a block dropped)."""
    h, w = img.shape[0] // k * k, img.shape[1] // k * k
    x = img[:h, :w].astype(np.float32).reshape(h // k, k, w // k, k, -1).mean(axis=(1, 3))
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def write_downscaled(image_dir: Path, out: Path, names: list[str], show_progress: bool,
                     check: Callable[[], None]) -> None:
    """images_2, images_4, images_8: each image area-averaged, under its own name."""
    import imageio.v3 as iio

    for k in DOWNSCALES:
        (out / f"images_{k}").mkdir(exist_ok=True)
    bar = _Progress(show_progress, "resize", len(names), "img")
    try:
        for i, name in enumerate(names):
            check()
            img = iio.imread(image_dir / name)
            if img.ndim == 2:
                img = img[..., None]
            for k in DOWNSCALES:
                small = area_downscale(img, k)
                small = small[..., 0] if small.shape[-1] == 1 else small
                kw = {"quality": JPEG_QUALITY} if Path(name).suffix.lower() in (".jpg", ".jpeg") else {}
                iio.imwrite(out / f"images_{k}" / name, small, **kw)
            bar.set(i + 1)
    finally:
        bar.close()


def _write_report(out: Path, report: dict) -> None:
    (out / REPORT).write_text(json.dumps(report, indent=2))


# ------------------------------------------------------------------------------------ the pipeline

def process_data(source: Path, out: Path, opts: ProcessOptions, log: Callable[[str], None] = print,
                 warn: Callable[[str], None] = print) -> dict:
    """Run the whole pipeline (see the module docstring); returns the report written to
    DIR/process_report.json. One-line DatasetErrors: a missing input, a file that is neither a
    video nor a photo folder, no images, fewer than 3, unreadable ones, sizes that differ under
    one camera, an unreadable video, an existing DIR without overwrite, and too few images
    registered (under half or under 3; the partial report is kept)."""
    import pycolmap

    source, out = Path(source), Path(out)
    if opts.camera_model not in CAMERA_MODELS:
        raise DatasetError(f"camera model {opts.camera_model}: expected one of {', '.join(CAMERA_MODELS)}")
    if opts.matching not in MATCHINGS + ("auto",):
        raise DatasetError(f"matching {opts.matching}: expected exhaustive, sequential or auto")
    if not source.exists():
        raise DatasetError(f"{source}: not found (a folder of photos or a video file)")
    video = is_video(source)
    if not video and not source.is_dir():
        raise DatasetError(f"{source}: neither a folder of photos nor a video ({', '.join(VIDEO_SUFFIXES)})")
    check_output(source, out, opts.overwrite)
    photos, sizes, info = [], {}, None
    if video:
        info = video_info(source)
        if info["n_frames"] < MIN_IMAGES:
            raise DatasetError(f"{source}: the video holds {info['n_frames']} frame(s); structure from motion needs "
                               f"at least {MIN_IMAGES}")
    else:
        photos, sizes = check_photos(source, not opts.camera_per_image)
    matching = opts.matching
    if matching == "auto":
        matching = "sequential" if video or len(photos) > EXHAUSTIVE_UP_TO else "exhaustive"
    threads = opts.threads or machine_threads()
    if opts.gpu and not pycolmap.has_cuda:
        raise DatasetError("this pycolmap build has no CUDA support; run on the CPU (--device cpu)")

    if out.exists():
        shutil.rmtree(out)
    image_dir, work_dir = out / "images", out / WORK
    image_dir.mkdir(parents=True)
    work_dir.mkdir()
    db = work_dir / "database.db"
    old_level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 0 if opts.colmap_log else 3
    pycolmap.set_random_seed(opts.seed)
    runner = _Runner()
    restore = _catch_sigint(runner)
    seconds: dict[str, float] = {}
    report = {"status": "running", "input": str(source), "input_kind": "video" if video else "photos",
              "camera_model": opts.camera_model, "single_camera": not opts.camera_per_image, "matching": matching,
              "focal_per_image": {"mode": opts.focal_per_image, "kept": False},
              "fov_prior_degrees": opts.fov or None, "threads": threads, "pycolmap": pycolmap.__version__, "seconds": seconds}
    try:
        t = time.perf_counter()
        if video:
            bar = _Progress(opts.show_progress, "frames", info["n_frames"], "frame")
            try:
                picked, info = pick_frames(source, image_dir, opts.frames, progress=bar.set,
                                           should_stop=runner.stop.is_set)
            finally:
                bar.close()
            names = [f.name for f in picked]
            report["video"] = {"frames_in_video": info["n_decoded"], "fps": info["fps"], "frames_asked": opts.frames,
                               "frames_kept": len(picked),
                               "kept": [{"file": f.name, "index": f.index, "sharpness": round(f.sharpness, 2)}
                                        for f in picked]}
            if len(names) < MIN_IMAGES:
                raise DatasetError(f"{source}: only {len(names)} frame(s) could be read; structure from motion "
                                   f"needs at least {MIN_IMAGES}")
            seconds["frames"] = time.perf_counter() - t
        else:
            for p in photos:
                shutil.copy2(p, image_dir / p.name)
            names = [p.name for p in photos]
            seconds["copy"] = time.perf_counter() - t
        n = len(names)
        report["images_given"] = n
        log(f"process-data: {n} images, {opts.camera_model} camera{' per image' if opts.camera_per_image else ''}"
            f"{' (a focal length per image)' if opts.focal_per_image == 'on' else ''}, "
            f"{matching} matching, {threads} threads")

        t = time.perf_counter()
        _extract(db, image_dir, names, opts, threads, runner)
        seconds["extract"] = time.perf_counter() - t

        t = time.perf_counter()
        report["pairs"] = _match(db, work_dir, matching, opts, threads, runner)
        seconds["match"] = time.perf_counter() - t

        t = time.perf_counter()
        models = _map(db, image_dir, work_dir, n, opts, threads, runner)
        models = _unfold(models, db, image_dir, work_dir, names, opts, threads, runner, report, log, warn)
        seconds["map"] = time.perf_counter() - t

        t = time.perf_counter()
        rec = _largest(models)
        registered = rec.num_reg_images() if rec is not None else 0
        report.update(images_registered=registered, models=sorted((r.num_reg_images() for r in models.values()),
                                                                   reverse=True))
        if rec is not None:
            kept = {rec.images[i].name for i in rec.reg_image_ids()}
            elsewhere = sorted({rec2.images[i].name for rec2 in models.values() if rec2 is not rec
                                for i in rec2.reg_image_ids()} - kept)
            if elsewhere:
                warn(f"process-data: warning: the images split into {len(models)} models of "
                     f"{', '.join(str(s) for s in report['models'])} images; kept the largest "
                     f"({len(elsewhere)} images only in the others are dropped)")
            report["unregistered"] = sorted(set(names) - kept)
            if not opts.camera_per_image and (opts.focal_per_image == "on"
                                              or (opts.focal_per_image == "auto" and not video)):
                t_focal = time.perf_counter()
                split, summary = sfm_focal.refine_focal_per_image(rec, work_dir / "focal")
                keep = opts.focal_per_image == "on" or sfm_focal.worth_keeping(summary)
                report["focal_per_image"].update(summary, kept=keep, seconds=time.perf_counter() - t_focal)
                f = report["focal_per_image"]
                log(f"process-data: a focal length per image: {f['focal_px_min']:.1f}-{f['focal_px_max']:.1f} px, "
                    f"reprojection error {f['reprojection_error_before_px']:.3f} -> "
                    f"{f['reprojection_error_after_px']:.3f} px: "
                    f"{'kept' if keep else 'not kept (one focal length explains the images as well)'}")
                if keep:
                    rec = split
            report["mean_reprojection_error_px"] = float(rec.compute_mean_reprojection_error())
            report["points3d"] = int(rec.num_points3D())
            (out / "sparse" / "0").mkdir(parents=True)
            rec.write(out / "sparse" / "0")
        if registered < MIN_IMAGES or registered < n / 2:
            report["status"] = "too few registered"
            seconds["write"] = time.perf_counter() - t
            _write_report(out, report)
            other = "sequential" if matching == "exhaustive" else "exhaustive"
            raise DatasetError(f"{source}: only {registered} of {n} images registered (at least half and at least "
                               f"{MIN_IMAGES} are needed); more overlap between neighbouring views, sharper frames"
                               f"{' (or more --frames)' if video else ''} or --matching {other} usually help"
                               f"{FISHEYE_HINT if opts.camera_model == 'OPENCV_FISHEYE' else ''}; "
                               f"report: {out / REPORT}")
        if registered < n:
            warn(f"process-data: warning: {n - registered} of {n} images did not register and are left out of "
                 f"transforms.json (listed in {REPORT})")
        write_transforms(rec, out, not (opts.camera_per_image or report["focal_per_image"]["kept"]))
        write_ply(rec, out / "sparse_pc.ply")
        write_downscaled(image_dir, out, names, opts.show_progress, runner.check)
        shutil.rmtree(work_dir, ignore_errors=True)
        seconds["write"] = time.perf_counter() - t
        seconds["total"] = sum(v for k, v in seconds.items() if k != "total")
        report["status"] = "ok"
        _write_report(out, report)
        return report
    except KeyboardInterrupt:
        runner.stop.set()
        shutil.rmtree(out, ignore_errors=True)
        raise
    except DatasetError:
        shutil.rmtree(work_dir, ignore_errors=True)
        if not (out / REPORT).exists():
            report["status"] = "failed"
            _write_report(out, report)
        raise
    finally:
        pycolmap.logging.minloglevel = old_level
        restore()
