"""export-scene: a trained run as a mesh and/or a point cloud in the data's own world frame and units."""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from nerf.commands.common import OneLineParser, add_common_flags, pick_device, printer, run_command
from nerf.errors import UserError


def _reload_frame(cfg):
    """The loader's to_world read again from the data folder (one training image), or None."""
    def reload():
        import dataclasses

        from nerf.datasets.errors import DatasetError
        from nerf.datasets.registry import load_scene

        try:
            return load_scene(dataclasses.replace(cfg.data, max_images=1), "train").metadata.get("to_world")
        except (DatasetError, OSError):
            return None
    return reload


def export(argv: list[str]) -> int:
    from nerf.inference import export as ex
    from nerf.inference.export_files import check_output

    lo, hi = ex.RESOLUTION_RANGE
    p = OneLineParser(prog="export-scene", description="Export a trained run as a mesh (marching cubes on the "
                      "density, vertex colours and normals) and/or a point cloud (the training views' expected "
                      "depth where opacity is high), in the data's own world frame and units; .ply, .obj or .glb "
                      "by extension.")
    p.add_argument("run_dir", help="a run folder written by train-scene")
    p.add_argument("--mesh", metavar="FILE", help="write a mesh here (.ply, .obj or .glb)")
    p.add_argument("--points", metavar="FILE", help="write a point cloud here (.ply, .obj or .glb)")
    p.add_argument("--resolution", type=int, default=256,
                   help=f"marching-cubes cells along the longest side of the region, {lo}-{hi} (default 256)")
    p.add_argument("--level", type=float, default=None,
                   help="density of the surface, in the run's units (default: the density at which a layer "
                        f"1/{ex.REFERENCE_CELLS} of the scene box's diagonal thick has opacity "
                        + ", ".join(f"{v:g} ({k})" for k, v in ex.LEVEL_OPACITY.items()) + ")")
    p.add_argument("--min-component", type=float, default=0.01, metavar="SHARE",
                   help="drop connected pieces with fewer than this share of the triangles (default 0.01; 0 keeps all)")
    p.add_argument("--num-points", type=int, default=1_000_000, help="points in the point cloud (default 1000000)")
    p.add_argument("--box", type=float, nargs=6, metavar=("X0", "Y0", "Z0", "X1", "Y1", "Z1"), default=None,
                   help="the region to export, in the run's normalised frame (default: the occupied region; "
                        "the cube around the unit ball for contracted runs)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_common_flags(p)
    a = p.parse_args(argv)

    if not a.mesh and not a.points:
        raise UserError("nothing to export; pass --mesh FILE and/or --points FILE")
    mesh_path = check_output(a.mesh, "--mesh", a.overwrite) if a.mesh else None
    points_path = check_output(a.points, "--points", a.overwrite) if a.points else None
    if mesh_path and points_path and mesh_path.resolve() == points_path.resolve():
        raise UserError(f"--mesh and --points: both name {a.mesh}; give two files")
    if not lo <= a.resolution <= hi:
        raise UserError(f"--resolution: must be in [{lo}, {hi}], got {a.resolution}")
    if a.level is not None and not (math.isfinite(a.level) and a.level > 0):
        raise UserError(f"--level: must be a density > 0, got {a.level:g}")
    if not 0 <= a.min_component < 1:
        raise UserError(f"--min-component: must be in [0, 1), got {a.min_component:g}")
    if not 1 <= a.num_points <= 100_000_000:
        raise UserError(f"--num-points: must be in [1, 100000000], got {a.num_points}")
    box = None
    if a.box is not None:
        box = torch.tensor(a.box, dtype=torch.float32).reshape(2, 3)
        if not bool((box[1] > box[0]).all()):
            raise UserError(f"--box: needs X0 < X1, Y0 < Y1, Z0 < Z1, got {a.box}")

    from nerf.inference.export_files import write_mesh, write_points
    from nerf.runs.run_folder import load_run_config, load_trained_model

    run_dir = Path(a.run_dir)
    cfg = load_run_config(run_dir)
    seed = a.seed if a.seed is not None else cfg.train.seed
    torch.manual_seed(seed)
    model, step, scene_json = load_trained_model(run_dir, cfg, pick_device(a.device))
    method = cfg.model.method
    to_world = ex.run_to_world(scene_json, _reload_frame(cfg))
    src = ex.ExportSource.from_run(model, scene_json, method, to_world)
    say = printer(a.quiet)
    if mesh_path:
        level = a.level if a.level is not None else src.default_level()
        t0 = time.perf_counter()
        m = ex.export_mesh(src, a.resolution, level, a.min_component, box, progress=not a.quiet)
        write_mesh(mesh_path, m["vertices"], m["faces"], m["normals"], m["colours"])
        say(f"export-scene: mesh of step {step}: {m['triangles']:,} triangles, {len(m['vertices']):,} vertices "
            f"(resolution {a.resolution}, level {level:g}, {m['dropped_pieces']} small pieces dropped) in "
            f"{time.perf_counter() - t0:.1f} s -> {mesh_path}")
    if points_path:
        t0 = time.perf_counter()
        pc = ex.export_points(src, a.num_points, cfg.render.chunk, seed, box, a.level, progress=not a.quiet)
        write_points(points_path, pc["points"], pc["normals"], pc["colours"])
        say(f"export-scene: point cloud of step {step}: {len(pc['points']):,} points from {pc['rays']:,} rays "
            f"({pc['outliers']:,} outliers dropped) in {time.perf_counter() - t0:.1f} s -> {points_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command("export-scene", export, argv)
