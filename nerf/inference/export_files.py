"""Writing exported meshes and point clouds with trimesh: .ply (binary), .obj or .glb, by extension.

Meshes carry per-vertex colours and normals in all three. Point clouds carry colours in all three
and normals in .ply (nx, ny, nz) and .obj (vn lines); trimesh writes glTF points without normals.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nerf.errors import UserError

EXTENSIONS = (".ply", ".obj", ".glb")


def check_output(path: str, flag: str, overwrite: bool) -> Path:
    """The output path of `flag` (--mesh, --points), refused with one line when its extension is
    unknown or it exists and `overwrite` is off."""
    p = Path(path)
    if p.suffix.lower() not in EXTENSIONS:
        raise UserError(f"{flag} {path}: unknown extension {p.suffix or '(none)'!r}; use .ply, .obj or .glb")
    if p.exists() and not overwrite:
        raise UserError(f"{flag} {path}: already exists; pass --overwrite to replace it")
    if p.exists() and p.is_dir():
        raise UserError(f"{flag} {path}: is a folder")
    return p


def _rgba(colours: np.ndarray) -> np.ndarray:
    """Colours (n, 3) in [0, 1] -> RGBA uint8 (n, 4), opaque."""
    rgb = np.clip(np.round(np.asarray(colours, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.concatenate([rgb, np.full((len(rgb), 1), 255, dtype=np.uint8)], 1)


def _write(path: Path, data) -> None:
    """Write via a temporary file in the same folder, so a failed export leaves no half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def write_mesh(path: Path, vertices: np.ndarray, faces: np.ndarray, normals: np.ndarray, colours: np.ndarray) -> None:
    import trimesh

    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_normals=normals, vertex_colors=_rgba(colours),
                           process=False)
    ext = path.suffix.lower()
    if ext == ".ply":
        data = mesh.export(file_type="ply", vertex_normal=True)
    elif ext == ".obj":
        data = mesh.export(file_type="obj", include_normals=True, include_color=True)
    else:
        data = mesh.export(file_type="glb", include_normals=True)
    _write(path, data)


def write_points(path: Path, points: np.ndarray, normals: np.ndarray, colours: np.ndarray) -> None:
    import trimesh

    ext = path.suffix.lower()
    if ext == ".glb":
        data = trimesh.PointCloud(points, colors=_rgba(colours)).export(file_type="glb")
    else:  # a mesh without faces: trimesh then writes vertex normals too
        cloud = trimesh.Trimesh(vertices=points, faces=np.zeros((0, 3), dtype=np.int64), vertex_normals=normals,
                                vertex_colors=_rgba(colours), process=False)
        if ext == ".ply":
            data = cloud.export(file_type="ply", vertex_normal=True)
        else:  # drop the empty face line trimesh leaves, which some readers reject
            text = cloud.export(file_type="obj", include_normals=True, include_color=True)
            data = "\n".join(line for line in text.splitlines() if line.strip() != "f") + "\n"
    _write(path, data)
