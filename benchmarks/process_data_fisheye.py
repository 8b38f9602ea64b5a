"""process-data on a fisheye capture rendered from the built-in scene (its cameras known):
images registered, rotation and centre error after a similarity alignment, the recovered focal
length against the true one, and seconds, with `--fov` priors around the lens's true field of
view and without one. Writes benchmarks/results/process-data-fisheye-<date>.md.

    python benchmarks/process_data_fisheye.py [--fov 110 120 140 0]    # 0: no prior

The capture: `nerf.datasets.rendered_capture.fisheye_cameras` (36 views at 480x360 through an
OpenCV fisheye with a 120-degree horizontal field of view), PNG files, so no EXIF data.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine  # noqa: E402
from nerf.datasets.poses import aligned_pose_errors  # noqa: E402
from nerf.datasets.rendered_capture import FISHEYE_FOV, FISHEYE_LENS, fisheye_cameras, render_views  # noqa: E402


def run(photos: Path, out: Path, fov: float, true_c2w: np.ndarray, true_focal: float) -> dict:
    cmd = ["process-data", str(photos), "--out", str(out), "--camera-model", "OPENCV_FISHEYE", "--quiet"]
    if fov:
        cmd += ["--fov", f"{fov:g}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"fov": fov, "seconds": time.perf_counter() - start, "exit": proc.returncode}
    report = json.loads((out / "process_report.json").read_text()) if (out / "process_report.json").exists() else {}
    row["registered"] = report.get("images_registered", 0)
    if proc.returncode != 0:
        row["error"] = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        return row
    meta = json.loads((out / "transforms.json").read_text())
    est = np.array([fr["transform_matrix"] for fr in meta["frames"]])
    idx = [int(fr["file_path"].split("/")[-1][5:8]) for fr in meta["frames"]]
    angle, centre = aligned_pose_errors(est, true_c2w[idx])
    row.update(rot_deg=float(np.median(angle)), centre_pct=100 * float(np.median(centre)),
               focal=meta["fl_x"], focal_err_pct=100 * abs(meta["fl_x"] / true_focal - 1),
               lens=[round(meta[k], 4) for k in ("k1", "k2", "k3", "k4")])
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fov", type=float, nargs="+", default=[110.0, 120.0, 140.0, 0.0])
    a = ap.parse_args()
    cams = fisheye_cameras()
    work = Path(tempfile.mkdtemp(prefix="fisheye-"))
    photos = work / "photos"
    photos.mkdir()
    for i, v in enumerate(render_views(cams)):
        iio.imwrite(photos / f"view_{i:03d}.png", v)
    true_c2w, true_focal = cams.c2w.double().numpy(), float(cams.fx[0])
    rows = [run(photos, work / f"out{k}", fov, true_c2w, true_focal) for k, fov in enumerate(a.fov)]
    mach = machine()
    path = dated("process-data-fisheye", "md")
    lines = [f"# process-data on a fisheye capture, {path.stem[-10:]}", "",
             f"A capture rendered from the built-in scene with known cameras: {len(cams)} PNG views (no EXIF) at "
             f"{cams.width}x{cams.height} through an OpenCV fisheye (equidistant, k1-k4 = {FISHEYE_LENS}) with a "
             f"{FISHEYE_FOV:g}-degree horizontal field of view (focal {true_focal:.2f} px), circling the scene "
             "(`nerf.datasets.rendered_capture.fisheye_cameras`). Each row: `process-data photos --out DIR "
             "--camera-model OPENCV_FISHEYE [--fov F]`, then the recovered cameras against the true ones after a "
             "similarity alignment of the centres (median rotation error; median centre error in % of the cameras' "
             "spread).", "",
             f"Machine: {mach['cores']} cores, {mach['cpu']}, torch {mach['torch']}; commit {mach['commit']}; "
             f"load at start {mach['load_avg_1min']:.1f}.", "",
             "| --fov | exit | registered | rotation error (deg) | centre error (%) | focal (px) | focal error (%) "
             "| k1, k2, k3, k4 | seconds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for r in rows:
        if r["exit"]:
            lines.append(f"| {r['fov'] or 'none'} | {r['exit']} | {r['registered']} | | | | | | {r['seconds']:.0f} |")
        else:
            lines.append(f"| {r['fov'] or 'none'} | 0 | {r['registered']} | {r['rot_deg']:.3f} | {r['centre_pct']:.3f} "
                         f"| {r['focal']:.2f} | {r['focal_err_pct']:.2f} | {', '.join(map(str, r['lens']))} "
                         f"| {r['seconds']:.0f} |")
    failed = [r for r in rows if r["exit"]]
    if failed:
        lines += ["", "Without a prior: " + "; ".join(r.get("error", "") for r in failed)]
    lines += ["", "Command: `python benchmarks/process_data_fisheye.py --fov " + " ".join(f"{f:g}" for f in a.fov) + "`"]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
