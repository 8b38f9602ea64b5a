"""A focal length per image on a model mapped with one shared camera (`process-data
--focal-per-image`).

Photos from one phone without EXIF data can differ in focal length: a zoom step, another of the
phone's lenses, or stabilisation cropping. One shared camera then bends every pose of the odd
photos to fit a focal length they were not taken with, while a camera per image from the start
leaves COLMAP to find every lens from scratch, and a full lens per photo is poorly constrained.
This takes the middle way: map with the shared camera, then give each registered image its own
copy of it and bundle-adjust poses, points and the focal lengths only (principal point and lens
distortion stay the shared camera's).

By default (`process-data` on photos) the refined model is kept only where it explains the
photos markedly better than the shared camera: a mean reprojection error at least KEEP_GAIN
lower. One extra parameter per photo against hundreds of observed points barely lowers the
error by fitting noise; a real change of zoom lowers it clearly (benchmarks/results,
process-data-captures-*.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

KEEP_GAIN = 0.05  # the share by which a focal length per image must lower the reprojection error


def split_camera(rec, folder: Path):
    """`rec` with a camera per registered image (a copy of its own camera, same id as the image),
    through COLMAP's text files in `folder`: the reader gives each camera its trivial rig."""
    import pycolmap

    folder.mkdir(parents=True, exist_ok=True)
    rec.write_text(folder)
    cameras = {}
    for line in (folder / "cameras.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            cam_id, rest = line.split(maxsplit=1)
            cameras[int(cam_id)] = rest
    lines = [ln for ln in (folder / "images.txt").read_text().splitlines() if not ln.startswith("#")]
    images, own = [], []
    for header, points in zip(lines[0::2], lines[1::2]):
        fields = header.split()  # IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME
        own.append(f"{fields[0]} {cameras[int(fields[8])]}")
        fields[8] = fields[0]
        images += [" ".join(fields), points]
    (folder / "cameras.txt").write_text("\n".join(own) + "\n")
    (folder / "images.txt").write_text("\n".join(images) + "\n")
    for name in ("rigs.txt", "frames.txt"):
        (folder / name).unlink(missing_ok=True)
    return pycolmap.Reconstruction(folder)


def refine_focal_per_image(rec, folder: Path) -> tuple[object, dict]:
    """A new model with a focal length per image, bundle-adjusted from `rec` (one shared camera),
    and a summary for the report: the focal lengths' range and the mean reprojection error before
    and after."""
    import pycolmap

    before = float(rec.compute_mean_reprojection_error())
    split = split_camera(rec, folder)
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_focal_length = True
    options.refine_principal_point = False
    options.refine_extra_params = False
    options.print_summary = False
    pycolmap.bundle_adjustment(split, options)
    focal = np.array([cam.mean_focal_length() for cam in split.cameras.values()])
    return split, {"focal_px_min": float(focal.min()), "focal_px_median": float(np.median(focal)),
                   "focal_px_max": float(focal.max()), "reprojection_error_before_px": before,
                   "reprojection_error_after_px": float(split.compute_mean_reprojection_error())}


def worth_keeping(summary: dict) -> bool:
    """Whether a focal length per image (`refine_focal_per_image`'s summary) lowered the mean
    reprojection error by at least KEEP_GAIN."""
    return summary["reprojection_error_after_px"] <= (1 - KEEP_GAIN) * summary["reprojection_error_before_px"]
