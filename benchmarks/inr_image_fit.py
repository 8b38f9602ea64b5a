"""Image regression on real photos: no encoding vs positional encoding vs Gaussian Fourier features vs SIREN.

The Fourier-features paper's 2D protocol (Tancik et al. 2020, its natural-image results: no
mapping < positional encoding < Gaussian): train on every other pixel in each direction, report
PSNR on the held-out pixels. Photos come from ../shared/data (never copied into the repo):

  lego: nerf_synthetic/lego/train/r_0.png over white, area-downscaled 8x -> 100x100
  fern: nerf_llff_data/fern/images_8/image000.png, downscaled 4x -> 126x94

Each encoding's scale is tuned first on another photo of the same scene (lego r_1, fern
image001), never on the benchmark photo. Stages (each about 3 minutes on a shared 2-core CPU):

  python benchmarks/inr_image_fit.py tune --image lego    # -> results/inr_image_tune_lego-<date>.json
  python benchmarks/inr_image_fit.py fit --image lego     # -> results/inr_image_fit_lego-<date>.json, .png
  python benchmarks/inr_image_fit.py report               # -> results/inr_image_fit-<date>.csv, .json, .md

<date> is the day the stage runs (YYYY-MM-DD); `fit` reads the newest tune file of its image and
`report` the newest fit file of each image.

`fit` is exactly `fit-image IMAGE --encoding all --downscale K --steps 1000 --pos-freqs L --sigma S
--threads 1` (it calls the same function).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import KEEP_FREED_MEMORY, RESULTS, dated, latest  # noqa: E402
from nerf.inr.fit_image import FitSettings, fit_image, fit_one, load_image  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
IMAGES = {  # name: (benchmark photo, tuning photo, downscale)
    "lego": (SHARED / "nerf_synthetic/lego/train/r_0.png", SHARED / "nerf_synthetic/lego/train/r_1.png", 8),
    "fern": (SHARED / "nerf_llff_data/fern/images_8/image000.png", SHARED / "nerf_llff_data/fern/images_8/image001.png", 4),
}
TUNE_STEPS = 300
FIT_STEPS = 1000
POS_FREQS = [4, 5, 6, 7]
SIGMAS = [1.0, 1.5, 2.5, 4.0]


def machine() -> dict:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        sha = "unknown"
    return {"threads": torch.get_num_threads(), "commit": sha, "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "keep_freed_memory": KEEP_FREED_MEMORY}


def paths(name: str):
    if name not in IMAGES:
        sys.exit(f"--image: unknown {name!r}; known: {', '.join(IMAGES)}")
    bench, tune, k = IMAGES[name]
    for p in (bench, tune):
        if not p.is_file():
            sys.exit(f"{p}: not found (the photos live in ../shared/data beside the project)")
    return bench, tune, k


def stage_tune(a) -> None:
    _, tune, k = paths(a.image)
    img = load_image(tune, k)
    quiet = lambda *x: None  # noqa: E731
    sweep = {"positional": {}, "gaussian": {}}
    for L in POS_FREQS:
        r = fit_one(img, "positional", FitSettings(steps=TUNE_STEPS, eval_every=TUNE_STEPS, pos_freqs=L), log=quiet)
        sweep["positional"][L] = r["psnr"]
        print(f"  positional L={L}: {r['psnr']:.2f} dB", flush=True)
    for s in SIGMAS:
        r = fit_one(img, "gaussian", FitSettings(steps=TUNE_STEPS, eval_every=TUNE_STEPS, sigma=s), log=quiet)
        sweep["gaussian"][s] = r["psnr"]
        print(f"  gaussian sigma={s}: {r['psnr']:.2f} dB", flush=True)
    best = {"pos_freqs": max(sweep["positional"], key=sweep["positional"].get),
            "sigma": max(sweep["gaussian"], key=sweep["gaussian"].get)}
    out = {"tuning_image": str(tune.relative_to(SHARED)), "downscale": k, "steps": TUNE_STEPS,
           "held_out_psnr": {e: {str(p): v for p, v in d.items()} for e, d in sweep.items()}, "best": best,
           "machine": machine()}
    dated(f"inr_image_tune_{a.image}", "json").write_text(json.dumps(out, indent=1))
    print(f"best on {tune.name}: pos_freqs={best['pos_freqs']}, sigma={best['sigma']}")


def stage_fit(a) -> None:
    bench, _, k = paths(a.image)
    tuned = latest(f"inr_image_tune_{a.image}", "json")
    best = json.loads(tuned.read_text())["best"] if tuned else {}
    s = FitSettings(steps=a.steps, downscale=k, **best)
    out_dir = ROOT / "runs" / f"bench-fit-{a.image}"
    metrics = fit_image(bench, ["none", "positional", "gaussian", "siren"], out_dir, s)
    shutil.copy(out_dir / "comparison.png", dated(f"inr_image_fit_{a.image}", "png"))
    for m in metrics.values():
        m.pop("curve", None)
    out = {"image": str(bench.relative_to(SHARED)), "downscale": k, "settings": {"steps": s.steps, "width": s.width,
           "depth": s.depth, "pos_freqs": s.pos_freqs, "sigma": s.sigma, "features": s.features, "omega0": s.omega0,
           "lr": s.lr, "siren_lr": s.siren_lr, "tuned_on": str(tuned.name) if best else None},
           "metrics": metrics, "machine": machine()}
    dated(f"inr_image_fit_{a.image}", "json").write_text(json.dumps(out, indent=1))


def stage_report(a) -> None:
    found = {n: latest(f"inr_image_fit_{n}", "json") for n in IMAGES}
    runs = {n: json.loads(path.read_text()) for n, path in found.items() if path}
    if not runs:
        sys.exit("no inr_image_fit_<image>-<date>.json results; run the fit stage first")
    encs = ["none", "positional", "gaussian", "siren"]
    lines = ["image,width,height," + ",".join(f"{e}_psnr" for e in encs) + ",gap_positional_minus_none,"
             "gap_gaussian_minus_positional,paper_order_holds"]
    summary = {}
    md = ["| image | none | positional | gaussian | siren | positional - none | gaussian - positional | "
          "none < positional < gaussian |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, r in runs.items():
        p = {e: r["metrics"][e]["psnr"] for e in encs}
        gap1, gap2 = p["positional"] - p["none"], p["gaussian"] - p["positional"]
        order = p["none"] < p["positional"] < p["gaussian"]
        summary[name] = {"psnr": p, "gap_positional_minus_none": gap1, "gap_gaussian_minus_positional": gap2,
                         "paper_order_holds": order, "settings": r["settings"]}
        size = load_image(IMAGES[name][0], IMAGES[name][2]).shape
        lines.append(f"{name},{size[1]},{size[0]}," + ",".join(f"{p[e]:.2f}" for e in encs) +
                     f",{gap1:.2f},{gap2:.2f},{order}")
        md.append(f"| {name} ({size[1]}x{size[0]}) | " + " | ".join(f"{p[e]:.2f}" for e in encs) +
                  f" | {gap1:+.2f} | {gap2:+.2f} | {'yes' if order else 'no'} |")
    dated("inr_image_fit", "csv").write_text("\n".join(lines) + "\n")
    dated("inr_image_fit", "json").write_text(json.dumps(summary, indent=1))
    dated("inr_image_fit", "md").write_text("Held-out PSNR (dB), trained on every other pixel in each direction, "
                                               f"{FIT_STEPS} full-batch Adam steps.\n\n" + "\n".join(md) + "\n")
    print("\n".join(md))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="stage", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--image", default="lego")
    f = sub.add_parser("fit")
    f.add_argument("--image", default="lego")
    f.add_argument("--steps", type=int, default=FIT_STEPS)
    sub.add_parser("report")
    a = p.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    {"tune": stage_tune, "fit": stage_fit, "report": stage_report}[a.stage](a)


if __name__ == "__main__":
    main()
