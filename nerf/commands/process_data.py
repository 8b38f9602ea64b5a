"""process-data: photos or a video -> posed images (structure from motion with pycolmap), ready
for train-scene --data DIR."""
from __future__ import annotations

import sys
from pathlib import Path

from nerf.commands.common import OneLineParser, add_common_flags, printer, run_command
from nerf.errors import UserError


def process(argv: list[str]) -> int:
    from nerf.datasets.process_data import CAMERA_MODELS, EXHAUSTIVE_UP_TO, MATCHINGS, ProcessOptions, process_data
    from nerf.datasets.sfm_focal import KEEP_GAIN

    p = OneLineParser(
        prog="process-data",
        description="Recover the cameras of a folder of photos (JPEG/PNG) or of a video (mp4/mov) with COLMAP's "
                    "structure from motion (pycolmap: SIFT features, matching, incremental mapping), and write "
                    "posed images in nerfstudio's layout, ready for train-scene --data DIR.",
        epilog="DIR gets transforms.json, images/ (images_2/, images_4/, images_8/), sparse/0/ (the COLMAP model), "
               "sparse_pc.ply and process_report.json. Example: process-data phone.mp4 --out scenes/mug, then "
               "train-scene --data scenes/mug.",
    )
    p.add_argument("input", metavar="INPUT", help="a folder of photos, or a video file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (refused if it exists, see --overwrite)")
    p.add_argument("--frames", type=int, default=None,
                   help="video only: how many frames to keep, spread evenly, the sharpest of each neighbourhood "
                        "(default 150)")
    p.add_argument("--camera-model", default="OPENCV", choices=CAMERA_MODELS,
                   help="the lens model COLMAP fits (default OPENCV)")
    p.add_argument("--fov", type=float, default=None, metavar="DEGREES",
                   help="the lens's horizontal field of view, a prior on the focal length for photos without EXIF "
                        "data (a fisheye needs one: e.g. --camera-model OPENCV_FISHEYE --fov 120)")
    p.add_argument("--camera-per-image", action="store_true",
                   help="a camera for each image instead of one shared by all (photos from several cameras or zooms)")
    focal = p.add_mutually_exclusive_group()
    focal.add_argument("--focal-per-image", dest="focal", action="store_const", const="on", default="auto",
                       help="map with one shared camera, then refine a focal length for each image and keep it "
                            "(phone photos without EXIF data whose zoom or crop varies); lens and principal point "
                            "stay shared. By default photos get it only where it lowers the reprojection error "
                            f"by {KEEP_GAIN * 100:.0f}%% or more; a video's frames never")
    focal.add_argument("--one-focal", dest="focal", action="store_const", const="off",
                       help="one focal length for all images, never refined per image")
    p.add_argument("--matching", default="auto", choices=("auto",) + MATCHINGS,
                   help=f"which image pairs are matched; auto: sequential for a video, exhaustive for up to "
                        f"{EXHAUSTIVE_UP_TO} photos (sequential in name order beyond)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")
    p.add_argument("--colmap-log", action="store_true", help="show COLMAP's own log lines")
    add_common_flags(p)
    a = p.parse_args(argv)

    if a.fov is not None and not 1.0 <= a.fov <= (300.0 if a.camera_model == "OPENCV_FISHEYE" else 170.0):
        raise UserError(f"--fov: a horizontal field of view in degrees, 1-170 (a fisheye: up to 300), got {a.fov:g}")
    if a.frames is not None and a.frames < 3:
        raise UserError(f"--frames: must be at least 3, got {a.frames}")
    source = Path(a.input).expanduser()
    if a.frames is not None and source.is_dir():
        raise UserError("--frames: only for a video input (INPUT is a folder of photos)")
    if a.focal == "on" and a.camera_per_image:
        raise UserError("--focal-per-image: refines the shared camera's focal length per image; "
                        "--camera-per-image already fits a whole camera per image (use one of them)")
    if a.device == "cuda":
        import pycolmap

        if not pycolmap.has_cuda:
            raise UserError("--device cuda: this pycolmap build runs on the CPU only")
    opts = ProcessOptions(camera_model=a.camera_model, matching=a.matching, frames=a.frames or 150,
                          camera_per_image=a.camera_per_image,
                          focal_per_image=a.focal, overwrite=a.overwrite,
                          seed=0 if a.seed is None else a.seed, gpu=a.device == "cuda", show_progress=not a.quiet,
                          colmap_log=a.colmap_log or a.debug, fov=a.fov or 0.0)
    log = printer(a.quiet)
    warn = printer(a.quiet)
    report = process_data(source, Path(a.out).expanduser(), opts, log=log,
                          warn=lambda msg: warn(msg, file=sys.stderr))
    s = report["seconds"]
    log(f"registered {report['images_registered']} of {report['images_given']} images, "
        f"{report['points3d']} points, mean reprojection error {report['mean_reprojection_error_px']:.2f} px, "
        f"{s['total'] / 60:.1f} min (" + ", ".join(f"{k} {v:.0f} s" for k, v in s.items() if k != "total") + ")")
    log(f"outputs in {a.out}/ (transforms.json, images/, sparse/0/, sparse_pc.ply, process_report.json)\n"
        f"  train:  train-scene --data {a.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("process-data", process, argv)
