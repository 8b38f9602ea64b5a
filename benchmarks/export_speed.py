"""How long export-scene takes on a trained run and how much memory it needs: the mesh at each
resolution (marching cubes on the density, vertex colours, writing the .ply), triangle counts, and
the point cloud; each export runs in a fresh process, as a user runs the command, and reports its
own peak resident memory. Also draws a picture of the first resolution's mesh (vertex colours
beside plain shading) with a small z-buffered point splatter.

    python benchmarks/export_speed.py RUN_DIR [--resolutions 256 512] [--num-points 1000000]
        [--picture docs/images/export_lego.png] [--tag lego400]

Writes benchmarks/results/export_<tag>-<date>.json, the record benchmarks/results/export-<date>.md and
the meshes under RUN_DIR/exports/. Run it under `flock /tmp/nerf-bench.lock` on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import dated, machine, peak_rss_mb, today, write_json  # noqa: E402


def child(argv: list[str]) -> None:
    """Run one export-scene command in this process and print its wall time and peak memory."""
    from nerf.commands.export import main

    t0 = time.perf_counter()
    rc = main(argv)
    print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}))


def timed_export(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1])
    out["summary"] = [line for line in lines[:-1] if line.startswith("export-scene:")]
    return out


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera rotation (3, 3) rows: right, up, backward (OpenGL)."""
    back = (eye - target) / np.linalg.norm(eye - target)
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back])


def mesh_picture(mesh_path: Path, out: Path, size: int = 560, azimuth: float = -35.0, elevation: float = 28.0) -> None:
    """A picture of a mesh file: its vertex colours (left) and plain grey shading (right), seen
    from a perspective camera; the surface is drawn by splatting dense area-uniform samples into a
    z-buffer (about 16 samples per pixel of surface)."""
    import imageio.v2 as iio2
    import trimesh

    mesh = trimesh.load(mesh_path, process=False, force="mesh")
    centre = mesh.bounds.mean(0)
    radius = float(np.linalg.norm(mesh.bounds[1] - mesh.bounds[0])) / 2
    az, el = math.radians(azimuth), math.radians(elevation)
    eye = centre + 2.6 * radius * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    rot = look_at(eye, centre)
    focal = size / (2 * math.tan(math.radians(21)))
    n = int(16 * size * size * mesh.area / (math.pi * radius ** 2))
    pts, fidx = trimesh.sample.sample_surface(mesh, n, seed=0)
    cam = (pts - eye) @ rot.T
    z = -cam[:, 2]
    u = (focal * cam[:, 0] / z + size / 2).astype(np.int64)
    v = (size / 2 - focal * cam[:, 1] / z).astype(np.int64)
    ok = (z > 0) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
    pix, z, fidx = (v * size + u)[ok], z[ok], fidx[ok]
    order = np.lexsort((z, pix))  # nearest sample first within each pixel
    pix, fidx = pix[order], fidx[order]
    first = np.r_[True, pix[1:] != pix[:-1]]
    pix, fidx = pix[first], fidx[first]
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3].astype(np.float64) / 255.0
    rgb = colours[mesh.faces[fidx]].mean(1)
    normal = mesh.face_normals[fidx]
    light = (eye - centre) / np.linalg.norm(eye - centre) + np.array([0.0, 0.0, 0.6])
    grey = 0.25 + 0.75 * np.clip(normal @ (light / np.linalg.norm(light)), 0, 1)
    left, right = np.ones((size * size, 3)), np.ones((size * size, 3))
    left[pix], right[pix] = rgb, grey[:, None] * np.array([0.85, 0.85, 0.9])
    img = np.concatenate([left.reshape(size, size, 3), right.reshape(size, size, 3)], 1)
    out.parent.mkdir(parents=True, exist_ok=True)
    iio2.imwrite(out, (img * 255 + 0.5).astype(np.uint8))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    ap.add_argument("--num-points", type=int, default=1_000_000, help="point cloud size (0: skip)")
    ap.add_argument("--picture", default=None, help="draw the first resolution's mesh here (PNG)")
    ap.add_argument("--tag", default=None, help="results file tag (default: the run folder's name)")
    a = ap.parse_args()
    run = Path(a.run_dir)
    out_dir = run / "exports"
    rows = []
    for res in a.resolutions:
        mesh = out_dir / f"mesh_{res}.ply"
        r = timed_export([str(run), "--mesh", str(mesh), "--resolution", str(res), "--overwrite"])
        import trimesh

        m = trimesh.load(mesh, process=False, force="mesh")
        r.update({"what": "mesh", "resolution": res, "triangles": int(len(m.faces)), "vertices": int(len(m.vertices)),
                  "file_mb": mesh.stat().st_size / 2**20})
        print(f"mesh {res}^3: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB, {r['triangles']:,} triangles")
        rows.append(r)
    if a.num_points:
        pts = out_dir / "points.ply"
        r = timed_export([str(run), "--points", str(pts), "--num-points", str(a.num_points), "--overwrite"])
        r.update({"what": "points", "num_points": a.num_points, "file_mb": pts.stat().st_size / 2**20})
        print(f"points {a.num_points:,}: {r['seconds']:.1f} s, peak {r['peak_rss_mb']:.0f} MB")
        rows.append(r)
    if a.picture:
        mesh_picture(out_dir / f"mesh_{a.resolutions[0]}.ply", Path(a.picture))
        print(f"picture -> {a.picture}")
    result = {"run": str(run), "machine": machine(), "rows": rows}
    path = dated(f"export_{a.tag or run.name}", "json")
    write_json(path, result)
    record = dated("export", "md")
    record.write_text(markdown(result, a, " ".join(sys.argv[1:])))
    print(f"-> {path}, {record}")


def markdown(result: dict, a, args: str) -> str:
    """The study's record: protocol, machine, commit, date, the table and the command."""
    m = result["machine"]
    scene = json.loads((Path(result["run"]) / "scene.json").read_text())
    k = scene["intrinsics"]
    lines = [f"# export-scene speed and memory, {today()}", "",
             f"One trained run ({scene['name']}, {k['width']}x{k['height']} training images, "
             f"step {json.loads((Path(result['run']) / 'metrics.json').read_text()).get('step', '?')}) exported by "
             "`export-scene` in a fresh process per row: wall time of the whole command (loading the run, "
             "sampling the density slab by slab, marching cubes, dropping small pieces, vertex colours, writing the "
             "binary .ply) and the process's peak resident memory. Default level and --min-component; the "
             "point cloud renders random pixels of the training views until it holds the points asked for.", "",
             f"Command: `python benchmarks/export_speed.py {args}`  ",
             f"Commit: {m['commit']}, torch {m['torch']}, {m['cores']} cores, {m['threads']} threads, "
             f"load average at the start {m['load_avg_1min']:.2f}.", "",
             "| export | seconds | peak memory | triangles / points | file |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in result["rows"]:
        what = f"mesh, --resolution {r['resolution']}" if r["what"] == "mesh" else f"points, --num-points {r['num_points']}"
        count = f"{r['triangles']:,} triangles" if r["what"] == "mesh" else f"{r['num_points']:,} points"
        lines.append(f"| {what} | {r['seconds']:.1f} | {r['peak_rss_mb'] / 1024:.2f} GB | {count} | "
                     f"{r['file_mb']:.0f} MB |")
    if a.picture:
        lines += ["", f"Picture of the --resolution {a.resolutions[0]} mesh: `{a.picture}` (vertex colours, then "
                  "plain shading; drawn by `mesh_picture` in the script)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
