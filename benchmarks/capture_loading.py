"""How each real capture in ../shared/data/captures loads with default options: the format detected,
train / test images, image size, camera model, content box (and where it came from), ray bounds
and load time. Writes benchmarks/results/capture-loading-<date>.md and .json.

    python benchmarks/capture_loading.py                       # every folder in ../shared/data/captures
    python benchmarks/capture_loading.py --captures DIR --out /tmp/x

COLMAP camera models are read with pycolmap when it is installed (the loader records none).
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import machine, write_json  # noqa: E402
from nerf.datasets import load_scene  # noqa: E402
from nerf.datasets.options import DataOptions  # noqa: E402
from nerf.datasets.registry import detect_format  # noqa: E402

CAPTURES = ROOT.parent / "shared" / "data" / "captures"


def colmap_models(scene) -> str:
    try:
        import pycolmap
    except ImportError:
        return "?"
    rec = pycolmap.Reconstruction(str(scene.metadata["model"]))
    return ", ".join(sorted({c.model.name for c in rec.cameras.values()}))


def lens(scene) -> str:
    d = scene.cameras.distortion
    if d is None:
        return "pinhole"
    if d.shape[1] > 6 and bool((d[:, 6] > 0.5).any()):
        return "fisheye"
    return "radial-tangential"


def one(root: Path) -> dict:
    t0 = time.perf_counter()
    fmt = detect_format(root)
    train = load_scene(DataOptions(path=str(root)), "train")
    test = load_scene(DataOptions(path=str(root)), "test")
    seconds = time.perf_counter() - t0
    m = train.metadata
    model = m.get("camera_model") or (colmap_models(train) if fmt == "colmap" else "?")
    box_source = m.get("box_source") or ("sparse points" if m.get("n_points") else "loader")
    box = train.bbox.tolist()
    row = {"capture": root.name, "format": fmt, "train": len(train), "test": len(test),
           "size": f"{train.width}x{train.height}", "camera_model": model, "lens": lens(train),
           "images": m.get("image_folder") or "as named", "box": [[round(v, 3) for v in b] for b in box],
           "box_source": box_source, "near": round(train.near, 4), "far": round(train.far, 4),
           "load_seconds": round(seconds, 1)}
    del train, test
    return row


def write_md(path: Path, rows: list[dict], info: dict, command: str) -> None:
    lines = [
        f"# Capture loading, {info['date']}",
        "",
        "Every folder of `../shared/data/captures` loaded as `train-scene --data DIR` loads it: detection, then",
        "`load_scene(DataOptions(path=DIR), split)` for train and test with default options (every 8th frame held",
        "out, data.downscale 1). The box is the content box in the loader's normalised world (cameras centred on",
        "their mean position, the furthest at distance 1), with where it came from; near / far in the same units.",
        "",
        f"Command: `{command}`  ",
        f"Commit: {info['commit']}, date: {info['date']}, torch {info['torch']}, {info['cores']} cores.",
        "",
        "| capture | format | train / test | image size | camera model (lens) | images read "
        "| content box [min; max] | box from | near / far | load s |",
        "| --- | --- | ---: | --- | --- | --- | --- | --- | --- | ---: |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['capture']} | error: {r['error']} | | | | | | | | |")
            continue
        box = "[" + ", ".join(f"{v:.2f}" for v in r["box"][0]) + "; " + ", ".join(f"{v:.2f}" for v in r["box"][1]) + "]"
        lines.append(f"| {r['capture']} | {r['format']} | {r['train']} / {r['test']} | {r['size']} | "
                     f"{r['camera_model']} ({r['lens']}) | {r['images']} | {box} | {r['box_source']} | "
                     f"{r['near']:.3g} / {r['far']:.3g} | {r['load_seconds']} |")
    lines += [
        "",
        "Notes: `frusta` is the box where the training cameras' view frusta meet (`datasets/poses.py`,",
        "`frusta_box`); for egypt, whose cameras look outward from a rooftop, no region is seen by half of",
        "them and the box is the whole search cube around the cameras. `aabb_scale` is instant-ngp's box",
        "(aabb_scale 16 for coke_can: a large cube, as the file asks). COLMAP boxes are the 1st-99th",
        "percentile box of the sparse points.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=Path, default=CAPTURES)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)
    if not args.captures.is_dir():
        print(f"{args.captures}: not found", file=sys.stderr)
        return 2
    rows = []
    for root in sorted(p for p in args.captures.iterdir() if p.is_dir()):
        try:
            rows.append(one(root))
        except Exception as exc:  # noqa: BLE001 - a capture that fails is part of the record
            rows.append({"capture": root.name, "error": str(exc).splitlines()[0]})
        print(rows[-1], flush=True)
    date = datetime.date.today().isoformat()
    info = {**machine(), "date": date}
    command = "python benchmarks/capture_loading.py" + ("" if args.captures == CAPTURES else f" --captures {args.captures}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / f"capture-loading-{date}.json", {"machine": info, "command": command, "rows": rows})
    write_md(args.out / f"capture-loading-{date}.md", rows, info, command)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
