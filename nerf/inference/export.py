"""Export a trained run: a mesh by marching cubes on its density and a point cloud from the expected
depth of its training views, both in the data's own world frame and units.

Mesh: the density is sampled on a lattice over the region the field occupies (the fast method's
occupancy grid; the scene box for the paper model; the cube around the unit ball for contracted
runs, or a given box), one slab of lattice planes at a time so that 512^3 needs only a slab's
worth of memory; density counts as zero outside the occupied cells, as in a render. Marching
cubes (scikit-image) runs per slab; the slabs share their boundary plane, and vertices there are
welded. Faces wind outward. Connected pieces with fewer triangles than a share of the whole are
dropped (floaters). A vertex's colour is the field's colour a fraction of a cell inside the
surface, seen looking along the surface normal (the view of a camera straight in front of it).

Point cloud: random pixels of the training views are rendered; where a ray's opacity is high its
expected depth gives a point, its colour (background removed) the point's colour and the negative
density gradient there its normal (turned towards the camera that saw it). Points whose mean
distance to their nearest neighbours is unusually large are dropped as outliers.

Frames: a run trains in the frame its loader made (datasets/ centres and scales captures, LLFF
also recentres or spherifies, forward-facing LLFF is sampled in NDC). scene.json's `to_world`
(4x4, x_data = to_world @ x) takes that frame back to the file's world; NDC points are first
mapped back to the loader's world with the first camera's focal length. Blender and the built-in
scene are not moved by their loaders.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from nerf.datasets.scene import Cameras
from nerf.errors import UserError
from nerf.models.base import RENDER
from nerf.models.fast import FastNeRF
from nerf.render.ndc import ndc_points
from nerf.scene_rays import SceneInfo, pixel_rays

# The default marching-cubes level: the density at which a layer 1/256 of the scene box's diagonal
# thick has this opacity, per method. Densities are per unit length of the run's frame, which the
# loaders scale differently, so the level follows the box. Lower levels wrap the fog around a
# surface, higher ones open holes where a surface is thin (tests/test_export.py measures the
# distance to the true surface on the built-in scene).
LEVEL_OPACITY = {"fast": 0.3, "nerf": 0.3}
REFERENCE_CELLS = 256
RESOLUTION_RANGE = (32, 1024)
POINT_OPACITY = 0.95  # a pixel gives a point when its ray's opacity is at least this
NEIGHBOURS, OUTLIER_STD = 16, 2.0  # statistical outlier removal (as Open3D's)
CHUNK = 1 << 18  # points per density evaluation


@dataclass
class ExportSource:
    """What an export reads from a trained run: the model in eval mode, its scene facts and frames.

    method: fast | nerf; contracted: the run uses a scene contraction (only the region that maps
    to the unit ball is meshed by default); to_world: (4, 4) from the run's frame to the data's
    world."""

    model: torch.nn.Module
    info: SceneInfo
    scene_json: dict
    method: str
    contracted: bool
    to_world: np.ndarray
    device: torch.device

    @classmethod
    def from_run(cls, model, scene_json: dict, method: str, to_world: np.ndarray) -> "ExportSource":
        contracted = getattr(model, "contraction", "none") not in ("none", None)  # resolved by the model
        return cls(model=model, info=SceneInfo(**scene_json["info"]), scene_json=scene_json, method=method,
                   contracted=contracted, to_world=to_world,
                   device=next(iter(model.parameters()), torch.zeros(0)).device)

    # ------------------------------------------------------------------ field access
    @torch.no_grad()
    def raw_density(self, x: torch.Tensor) -> torch.Tensor:
        """Density (m,) at points (m, 3) of the run's frame, without any mask."""
        m = self.model
        if isinstance(m, FastNeRF):
            return m.density(x)
        field = m.fine if m.fine is not None else m.coarse
        d = torch.zeros_like(x)
        d[:, 2] = -1.0  # the paper model's density does not depend on the direction
        with m.autocast(x.device.type):
            return field(x, d)[0].float()

    @torch.no_grad()
    def density(self, x: torch.Tensor) -> torch.Tensor:
        """Density (m,) as a render sees it: zero outside the fast method's occupied cells."""
        if isinstance(self.model, FastNeRF):
            occ = self.model.grid.is_occupied(x)
            out = torch.zeros(x.shape[0], device=x.device)
            if occ.any():
                out[occ] = self.model.density(x[occ])
            return out
        return self.raw_density(x)

    def occupied_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """Where (m,) the density can be non-zero, or None where everything may be."""
        if isinstance(self.model, FastNeRF):
            return self.model.grid.is_occupied(x)
        return None

    @torch.no_grad()
    def colour(self, x: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """Colour (m, 3) at points (m, 3) seen along unit world directions `view` (m, 3)."""
        m = self.model
        with m.autocast(x.device.type):
            if isinstance(m, FastNeRF):
                to_grid = getattr(m.grid, "to_grid", None)  # contracted runs: the field lives in grid space
                _, feats = m.field.density_features(to_grid(x) if to_grid is not None else x)
                return m.field.colour(feats, view, m.appearance_codes(None, x.shape[0], x.device)).float()
            field = m.fine if m.fine is not None else m.coarse
            return field(x, view)[1].float()

    def reference_cell(self) -> float:
        """1/256 of the diagonal of the scene box (NDC for NDC runs, the uncontracted cube for
        contracted ones), the length the default level and the point filters are measured in."""
        if self.contracted:
            radius = float(getattr(self.model.grid, "radius", 1.0))
            box = torch.tensor([[-radius] * 3, [radius] * 3])
        elif self.info.ndc:
            box = torch.tensor([[-1.0] * 3, [1.0] * 3])
        else:
            box = torch.tensor(self.info.bbox, dtype=torch.float32)
        return float((box[1] - box[0]).norm()) / REFERENCE_CELLS

    def default_level(self) -> float:
        """The density the mesh's surface is drawn at unless --level says otherwise."""
        return -math.log(1.0 - LEVEL_OPACITY.get(self.method, 0.3)) / self.reference_cell()

    # ------------------------------------------------------------------ frames
    def default_box(self) -> torch.Tensor:
        """(2, 3) region meshed without --box, in the run's frame (NDC for NDC runs)."""
        m = self.model
        if self.contracted:  # the region the contraction leaves as it is: centre +- radius
            centre = torch.as_tensor(getattr(m.grid, "centre", torch.zeros(3)), dtype=torch.float32).cpu()
            radius = float(getattr(m.grid, "radius", 1.0))
            return torch.stack([centre - radius, centre + radius])
        if isinstance(m, FastNeRF):
            g = m.grid
            pad = (g.bbox[1] - g.bbox[0]) / g.res
            box = torch.stack([torch.maximum(g.occupied_box[0] - pad, g.bbox[0]),
                               torch.minimum(g.occupied_box[1] + pad, g.bbox[1])]).cpu()
        else:
            box = torch.tensor([[-1.0] * 3, [1.0] * 3]) if self.info.ndc else torch.tensor(self.info.bbox)
        if self.info.ndc:  # not past the scene's far bound: NDC depth 1 is at infinity
            far = (self.scene_json.get("world_bounds") or [None, None])[1]
            z_max = 1.0 - 2.0 / (1.5 * far) if far else 0.99
            box[1, 2] = min(float(box[1, 2]), z_max)
        return box.float()

    def to_run_world(self, p: torch.Tensor) -> torch.Tensor:
        """Points (m, 3) of the run's frame -> the loader's world frame (NDC undone)."""
        if not self.info.ndc:
            return p
        k = self.scene_json["intrinsics"]
        ax, ay = 2.0 * k["fx"] / k["width"], 2.0 * k["fy"] / k["height"]
        c = p[:, 2].clamp(max=1.0 - 1e-6)
        z = 2.0 / (c - 1.0)  # near plane at z = -1, as the LLFF loader's NDC rays
        return torch.stack([-p[:, 0] * z / ax, -p[:, 1] * z / ay, z], -1)

    def from_run_world(self, p: torch.Tensor) -> torch.Tensor:
        """Points (m, 3) of the loader's world -> the run's frame (NDC for NDC runs)."""
        if not self.info.ndc:
            return p
        k = self.scene_json["intrinsics"]
        return ndc_points(p, k["fx"], k["fy"], k["width"], k["height"], near_plane=1.0)

    def to_data(self, p: np.ndarray) -> np.ndarray:
        """Points (m, 3) of the loader's world -> the data's own world and units."""
        return p @ self.to_world[:3, :3].T + self.to_world[:3, 3]

    def rotate_to_data(self, n: np.ndarray) -> np.ndarray:
        """Unit normals (m, 3) of the loader's world -> the data's world."""
        out = n @ self.to_world[:3, :3].T
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)

    @property
    def flips_winding(self) -> bool:
        """Whether the map to the data's world mirrors (NDC -> world does; so would a reflection)."""
        return bool(self.info.ndc) != bool(np.linalg.det(self.to_world[:3, :3]) < 0)


def run_to_world(scene_json: dict, reload_frame=None) -> np.ndarray:
    """The (4, 4) map from a run's frame to its data's world: scene.json's `to_world`; for runs
    written before it was recorded, identity for the formats whose loaders do not move the scene,
    else `reload_frame()` (the loader's record, read again from the data folder) or, failing that,
    identity with a warning."""
    rec = scene_json.get("to_world")
    if rec is not None:
        return np.asarray(rec, dtype=np.float64)
    if scene_json.get("format") in ("blender", "builtin"):
        return np.eye(4)
    found = reload_frame() if reload_frame is not None else None
    if found is not None:
        return np.asarray(found, dtype=np.float64)
    warnings.warn("scene.json records no to_world and the data folder did not load: exporting in the run's "
                  "normalised frame", stacklevel=2)
    return np.eye(4)


# ---------------------------------------------------------------------- mesh
def lattice(box: torch.Tensor, resolution: int) -> tuple[np.ndarray, float]:
    """Points per axis (3,) of a lattice over `box` (2, 3) with `resolution` cells along its
    longest side (cubic cells), and the cell size."""
    size = (box[1] - box[0]).double().numpy()
    cell = float(size.max()) / resolution
    counts = np.maximum(np.ceil(size / cell - 1e-6).astype(int), 1) + 1
    return counts, cell


@torch.no_grad()
def sample_slab(src: ExportSource, lo: np.ndarray, cell: float, i0: int, i1: int, counts: np.ndarray) -> np.ndarray:
    """Density on lattice planes i0..i1-1 (along x) as an array (i1 - i0, ny, nz)."""
    dev = src.device
    xs = torch.arange(i0, i1, device=dev, dtype=torch.float64) * cell + lo[0]
    ys = torch.arange(int(counts[1]), device=dev, dtype=torch.float64) * cell + lo[1]
    zs = torch.arange(int(counts[2]), device=dev, dtype=torch.float64) * cell + lo[2]
    pts = torch.stack(torch.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3).float()
    out = torch.zeros(pts.shape[0], device=dev)
    mask = src.occupied_mask(pts)
    idx = mask.nonzero(as_tuple=True)[0] if mask is not None else None
    n = pts.shape[0] if idx is None else idx.numel()
    for s in range(0, n, CHUNK):
        if idx is None:
            out[s:s + CHUNK] = src.raw_density(pts[s:s + CHUNK])
        else:
            sel = idx[s:s + CHUNK]
            out[sel] = src.raw_density(pts[sel])
    return out.reshape(i1 - i0, int(counts[1]), int(counts[2])).cpu().numpy()


def marching_cubes_blocks(src: ExportSource, box: torch.Tensor, resolution: int, level: float,
                          progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Vertices (v, 3) and unit normals (v, 3) in the run's frame, faces (f, 3) wound outward,
    and the largest density met; the lattice is sampled in slabs of planes along x."""
    from skimage.measure import marching_cubes

    counts, cell = lattice(box, resolution)
    lo = box[0].double().numpy()
    plane = int(counts[1] * counts[2])
    per_slab = max(2, min(int(counts[0]), (8 << 20) // max(plane, 1)))  # about 8M lattice points a slab
    starts = list(range(0, int(counts[0]) - 1, per_slab - 1))
    verts, faces, normals, n_verts, peak = [], [], [], 0, 0.0
    for i0 in tqdm(starts, desc="mesh", unit="slab", disable=not progress):
        i1 = min(i0 + per_slab, int(counts[0]))
        vol = sample_slab(src, lo, cell, i0, i1, counts)
        peak = max(peak, float(vol.max()))
        if not (vol.min() < level < vol.max()):
            continue
        v, f, n, _ = marching_cubes(vol, level=level, allow_degenerate=False)
        v[:, 0] += i0
        verts.append(v)
        normals.append(n)
        faces.append(f + n_verts)
        n_verts += len(v)
    if not verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64), np.zeros((0, 3)), peak
    v, f, n = weld(np.concatenate(verts), np.concatenate(faces), np.concatenate(normals))
    return lo + v * cell, f[:, ::-1].copy(), n, peak  # scikit-image winds faces towards higher density


def weld(v: np.ndarray, f: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge vertices (lattice units) that coincide, as slabs produce on their shared plane; their
    normals are averaged; faces left with a repeated vertex are dropped."""
    key = np.round(v * 256).astype(np.int64)  # 1/256 of a cell
    key = (key[:, 0] << 42) | (key[:, 1] << 21) | key[:, 2]
    uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    nn = np.zeros((len(uniq), 3))
    np.add.at(nn, inverse, n)
    nn /= np.linalg.norm(nn, axis=1, keepdims=True).clip(1e-12)
    f = inverse.reshape(-1)[f]
    ok = (f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 0] != f[:, 2])
    return v[first], f[ok], nn


def drop_small_components(v: np.ndarray, f: np.ndarray, n: np.ndarray,
                          min_share: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Remove connected pieces with fewer than `min_share` of all triangles; returns the mesh with
    unused vertices removed and the number of pieces dropped."""
    if min_share <= 0 or len(f) == 0:
        return v, f, n, 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([f[:, 0], f[:, 1]])
    cols = np.concatenate([f[:, 1], f[:, 2]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(len(v), len(v)))
    _, label = connected_components(graph, directed=False)
    face_label = label[f[:, 0]]
    sizes = np.bincount(face_label)
    keep_label = sizes >= min_share * len(f)
    keep = keep_label[face_label]
    dropped = int(((sizes > 0) & ~keep_label).sum())
    f = f[keep]
    used = np.zeros(len(v), dtype=bool)
    used[f.reshape(-1)] = True
    remap = np.cumsum(used) - 1
    return v[used], remap[f], n[used], dropped


@torch.no_grad()
def vertex_colours(src: ExportSource, v: np.ndarray, n: np.ndarray, cell: float, progress: bool = True) -> np.ndarray:
    """Colour (v, 3) in [0, 1] of each vertex: the field at half a cell inside the surface, seen
    looking along the normal (run's-frame vertices and normals; the view direction is the
    world's, as the model's colour head expects)."""
    out = np.zeros((len(v), 3), dtype=np.float32)
    step = 1 << 16
    for s in tqdm(range(0, len(v), step), desc="colours", unit="chunk", disable=not progress):
        p = torch.as_tensor(v[s:s + step], dtype=torch.float32, device=src.device)
        nn = torch.as_tensor(n[s:s + step], dtype=torch.float32, device=src.device)
        inside = p - 0.5 * cell * nn
        if src.info.ndc:  # the view direction in the loader's world: along the mapped normal
            a, b = src.to_run_world(p), src.to_run_world(p + 1e-3 * nn)
            view = -torch.nn.functional.normalize(b - a, dim=-1)
        else:
            view = -nn
        out[s:s + step] = src.colour(inside, view).clamp(0, 1).cpu().numpy()
    return out


def export_mesh(src: ExportSource, resolution: int, level: float, min_share: float, box: torch.Tensor | None = None,
                progress: bool = True) -> dict:
    """The mesh in the data's world: vertices (v, 3), faces (f, 3), unit normals (v, 3), colours
    (v, 3) in [0, 1], plus what it took: triangles, dropped pieces, largest density met."""
    box = src.default_box() if box is None else box
    if not bool((box[1] > box[0]).all()):
        raise UserError("the region to mesh is empty (the occupancy grid holds no cell)")
    v, f, n, peak = marching_cubes_blocks(src, box, resolution, level, progress)
    if len(f) == 0:
        raise UserError(f"--level {level:g}: no surface; the density in the region reaches at most {peak:.3g} "
                        "(pick a lower level)")
    v, f, n, dropped = drop_small_components(v, f, n, min_share)
    _, cell = lattice(box, resolution)
    colours = vertex_colours(src, v, n, cell, progress)
    pts = src.to_run_world(torch.as_tensor(v, dtype=torch.float64)).numpy()
    pts = src.to_data(pts)
    if src.flips_winding:
        f = f[:, ::-1].copy()
    if src.info.ndc:  # normals from the mapped faces: NDC -> world is not a similarity
        normals = face_vertex_normals(pts, f)
    else:
        normals = src.rotate_to_data(n)
    return {"vertices": pts, "faces": f, "normals": normals, "colours": colours, "triangles": len(f),
            "dropped_pieces": dropped, "peak_density": peak, "box": box.tolist(), "cell": cell}


def face_vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Unit vertex normals (v, 3): the area-weighted normals of the faces around each vertex."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.linalg.norm(n, axis=1, keepdims=True).clip(1e-12)


# ---------------------------------------------------------------------- point cloud
def training_cameras(scene_json: dict, device) -> Cameras:
    """The training cameras scene.json records (poses, the first camera's intrinsics)."""
    c2w = torch.tensor(scene_json["train_c2w"], dtype=torch.float32)
    k = scene_json["intrinsics"]
    full = lambda v: torch.full((c2w.shape[0],), float(v))  # noqa: E731
    cams = Cameras(c2w=c2w, fx=full(k["fx"]), fy=full(k["fy"]), cx=full(k["cx"]), cy=full(k["cy"]),
                   width=int(k["width"]), height=int(k["height"]))
    return cams.to(device)


@torch.no_grad()
def density_normals(src: ExportSource, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Unit normals (m, 3) in the loader's world at its points `p` (m, 3): the negative gradient of
    the density by central differences of size `h` (m,)."""
    grad = torch.zeros_like(p)
    for k in range(3):
        e = torch.zeros_like(p)
        e[:, k] = h
        grad[:, k] = src.raw_density(src.from_run_world(p + e)) - src.raw_density(src.from_run_world(p - e))
    return -torch.nn.functional.normalize(grad, dim=-1)


def remove_outliers(p: np.ndarray, k: int = NEIGHBOURS, std_ratio: float = OUTLIER_STD) -> np.ndarray:
    """Which points (m,) to keep: those whose mean distance to their k nearest neighbours is at
    most the mean of that over all points plus `std_ratio` standard deviations."""
    if len(p) <= k:
        return np.ones(len(p), dtype=bool)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(p).query(p, k=k + 1, workers=-1)
    mean = dist[:, 1:].mean(1)
    return mean <= mean.mean() + std_ratio * mean.std()


@torch.no_grad()
def on_surface(src: ExportSource, p: torch.Tensor, d: torch.Tensor, level: float, cell: float) -> torch.Tensor:
    """Which expected-depth points (m, 3) (run's frame, rays along d (m, 3)) have the density of a
    surface within two cells along their ray: a ray that grazes an edge averages the depths of two
    surfaces and lands in the empty space between them."""
    step = cell * torch.nn.functional.normalize(d, dim=-1)
    best = torch.zeros(p.shape[0], device=p.device)
    for k in (-2, -1, 0, 1, 2):
        best = torch.maximum(best, src.density(p + k * step))
    return best >= level


@torch.no_grad()
def export_points(src: ExportSource, num_points: int, chunk: int, seed: int = 0, box: torch.Tensor | None = None,
                  level: float | None = None, progress: bool = True) -> dict:
    """The point cloud in the data's world: points (m, 3), unit normals (m, 3), colours (m, 3) in
    [0, 1], m <= num_points, and how many rays it rendered and outliers it dropped. A point is kept
    where its ray's opacity is at least POINT_OPACITY and the density reaches `level` (the mesh's
    default) within two reference cells of it along the ray."""
    level = src.default_level() if level is None else level
    cell = src.reference_cell()
    cams = training_cameras(src.scene_json, src.device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    model, info = src.model, src.info
    bg = model.background
    want = int(math.ceil(num_points * 1.1))  # some are lost as outliers
    got, rays_done, max_rays = 0, 0, 20 * num_points + 10 * chunk
    parts: list[tuple[torch.Tensor, ...]] = []
    bar = tqdm(total=want, desc="points", unit="pt", disable=not progress)
    while got < want and rays_done < max_rays:
        n = chunk
        cam = torch.randint(0, len(cams), (n,), generator=gen)
        x = torch.rand(n, generator=gen) * cams.width
        y = torch.rand(n, generator=gen) * cams.height
        cam, x, y = cam.to(src.device), x.to(src.device), y.to(src.device)
        rays = pixel_rays(cams, cam, x, y, info)
        out = model(rays, mode=RENDER)
        rays_done += n
        op = out["opacity"][:, 0]
        keep = op >= POINT_OPACITY
        if box is not None:
            p_run = rays.origins + rays.directions * out["depth"]
            keep &= ((p_run >= box[0].to(p_run)) & (p_run <= box[1].to(p_run))).all(-1)
        if not keep.any():
            continue
        p = rays.origins[keep] + rays.directions[keep] * out["depth"][keep]
        on = on_surface(src, p, rays.directions[keep], level, cell)
        keep[keep.clone()] = on
        p = p[on]
        if p.shape[0] == 0:
            continue
        rgb = out["rgb"][keep]
        if bg is not None:  # the colour of the surface alone
            rgb = (rgb - (1.0 - op[keep, None]) * bg) / op[keep, None]
        parts.append((src.to_run_world(p), rgb.clamp(0, 1), rays.view_directions[keep]))
        got += int(keep.sum())
        bar.update(int(keep.sum()))
    bar.close()
    if not parts:
        raise UserError("--points: no training ray reaches the opacity of a surface "
                        f"({POINT_OPACITY}); is the run trained?")
    p, rgb, view = (torch.cat(t) for t in zip(*parts))
    # normals: central differences over a reference cell (in the loader's world: scaled by depth for NDC)
    h = torch.full((p.shape[0],), cell, device=p.device)
    if info.ndc:
        h = 2.0 * cell * p[:, 2].abs()
    normals = torch.cat([density_normals(src, p[s:s + chunk], h[s:s + chunk]) for s in range(0, p.shape[0], chunk)])
    normals = torch.where(((normals * view).sum(-1, keepdim=True) > 0), -normals, normals)
    pts = p.cpu().double().numpy()
    keep = remove_outliers(pts)
    outliers = int((~keep).sum())
    idx = np.nonzero(keep)[0]
    if len(idx) > num_points:
        idx = np.sort(np.random.default_rng(seed).choice(idx, num_points, replace=False))
    return {"points": src.to_data(pts[idx]), "normals": src.rotate_to_data(normals.cpu().double().numpy()[idx]),
            "colours": rgb.cpu().numpy()[idx], "rays": rays_done, "outliers": outliers}
