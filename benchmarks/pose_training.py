"""Training on process-data's poses against training on a capture's published poses: the plain
command for the same minutes on both, each scored by its own evaluation on its held-out photos
(every 8th by name; the photos and their names are the same, so the held-out sets are too, which
the record checks). One run at a time, each in a fresh process.

    python benchmarks/process_data.py --only beer_can_frames     # process-data's output first
    python benchmarks/pose_training.py --cases beer_can_frames --minutes 10

Writes benchmarks/results/pose-training-<date>.md and .json (rows added to the day's record).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.capture_training import CAPTURES, train_and_score  # noqa: E402
from benchmarks.common import dated, write_json  # noqa: E402

# case (a process_data.py case of photos): the published capture folder it was made from
CASES = {"beer_can_frames": "beer_can", "cup_desk": "cup_desk", "bird_figure": "bird_figure",
         "cup_desk_per_image": "cup_desk", "cup_desk_focal_per_image": "cup_desk",
         "bird_figure_focal_per_image": "bird_figure"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", choices=list(CASES), default=["beer_can_frames"])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--poses", nargs="+", choices=["process-data", "published"], default=["process-data", "published"],
                    help="which runs to make (one alone leaves 'same held-out' to compare by hand)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/process-data-bench"),
                    help="process_data.py's outputs, one folder per case")
    ap.add_argument("--out", type=Path, default=Path("/tmp/pose_training"), help="run folders")
    a = ap.parse_args()
    rows = []
    for case in a.cases:
        ours = a.work / case
        if not (ours / "transforms.json").is_file():
            raise SystemExit(f"{ours / 'transforms.json'}: not found; run benchmarks/process_data.py --only {case} first")
        report = json.loads((ours / "process_report.json").read_text())
        for poses, data in (("process-data", ours), ("published", CAPTURES / CASES[case])):
            if poses not in a.poses:
                continue
            r = train_and_score(data, a.out / f"{case}-{poses}-{a.minutes:g}min", a.minutes, [])
            rows.append({"case": case, "poses": poses, "data": str(data), "registered": report.get("images_registered"),
                         "given": report.get("images_given"), **r})
            print(f"{case} {poses}: {r['psnr']:.2f} dB / {r['ssim']:.3f} after {r['step']} steps", flush=True)
        if len(a.poses) == 2:
            a_, b_ = rows[-2], rows[-1]
            same = [Path(n).stem for n in a_["held_out"]] == [Path(n).stem for n in b_["held_out"]]
            for r in (a_, b_):
                r["same_held_out"] = same
    md, js = dated("pose-training", "md"), dated("pose-training", "json")
    old = json.loads(js.read_text()) if js.is_file() else {"rows": []}
    write_json(js, {"rows": old["rows"] + rows})
    new = not md.exists()
    with md.open("a") as f:
        if new:
            f.write("# Training on process-data's poses against the published poses, " + md.stem[-10:] + "\n\n"
                    "Each row: `train-scene --data DATA train.max_minutes=M` (the plain command) on process-data's "
                    "output of a capture's photos, then on the capture's published COLMAP model, one run at a time "
                    "on this machine, each scored by its own evaluation on the held-out photos (every 8th by name). "
                    "Same held-out: whether both runs scored the same photos. Command: "
                    "`python benchmarks/pose_training.py --cases CASE --minutes M` after "
                    "`python benchmarks/process_data.py --only CASE`.\n\n"
                    "| case | poses | registered / given | minutes | steps | PSNR | SSIM | views | same held-out | "
                    "render s | commit | load at start |\n"
                    "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |\n")
        for r in rows:
            reg = f"{r['registered']} / {r['given']}" if r["poses"] == "process-data" else ""
            same = {True: "yes", False: "no"}.get(r.get("same_held_out"), "by hand")
            f.write(f"| {r['case']} | {r['poses']} | {reg} | {r['minutes']:g} | {r['step']} | {r['psnr']:.2f} | "
                    f"{r['ssim']:.3f} | {r['views']} | {same} | {r['render_s']:.2f} | "
                    f"{r['machine']['commit']} | {r['machine']['load_avg_1min']:.1f} |\n")
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
