"""The occupancy grid against the built-in scene's exact geometry (datasets/synthetic.py)."""
import math

import pytest
import torch

from datasets import synthetic as syn
from datasets.options import DataOptions
from render.occupancy import OccupancyGrid, ray_box
from render.rays import image_rays

RES = 48
CELL = 2.2 / RES  # the built-in box is [-1.1, 1.1]^3


def inside_shapes(p: torch.Tensor, inflate: float = 0.0) -> torch.Tensor:
    """Whether points (m, 3) lie within `inflate` of the built-in scene's spheres and boxes."""
    hit = torch.zeros(p.shape[0], dtype=torch.bool)
    for centre, radius, *_ in syn.SPHERES:
        hit |= (p - torch.tensor(centre)).norm(dim=-1) <= radius + inflate
    for centre, half, deg, *_ in syn.BOXES:
        local = (p - torch.tensor(centre)) @ syn._rot_z(deg)
        q = (local.abs() - torch.tensor(half)).clamp_min(0)
        hit |= q.norm(dim=-1) <= inflate
    return hit


def dilated_density(p):  # the shapes grown by one cell diagonal: every cell touching a surface is solid
    return inside_shapes(p, math.sqrt(3) * CELL).float() * 1000.0


def true_density(p):
    return inside_shapes(p).float() * 1000.0


def surface_points(n_views=3, res=32):
    opts = DataOptions()
    opts.synthetic.resolution = res
    cams = syn.make_cameras(opts.synthetic, "test")
    o, d, t = [], [], []
    for i in range(n_views):
        r = image_rays(cams, i, syn.NEAR, syn.FAR)
        _, depth = syn.shade(r.origins, r.directions)
        o.append(r.origins), d.append(r.directions), t.append(depth)
    return torch.cat(o), torch.cat(d), torch.cat(t)


@pytest.fixture(scope="module")
def grid():
    g = OccupancyGrid(torch.tensor(syn.BBOX), res=RES, step=0.01)
    g.update(dilated_density, torch.Generator().manual_seed(0), warmup=True)
    return g


def test_never_culls_a_surface(grid):
    o, d, t = surface_points()
    hit = torch.isfinite(t)
    assert hit.sum() > 500
    pts = o[hit] + d[hit] * t[hit, None]
    # the surface point itself and points just in front of / behind it
    for s in (-0.5 * CELL, 0.0, 0.5 * CELL):
        assert grid.is_occupied(pts + s * d[hit]).all()


def test_marks_empty_space_empty(grid):
    o, d, t = surface_points()
    # free space seen by the cameras: points on rays more than 3 cells in front of the first hit
    tt = torch.linspace(0, 1, 64)
    t_in, _ = ray_box(o, d, grid.bbox[0], grid.bbox[1])
    stop = torch.where(torch.isfinite(t), t - 3 * CELL, torch.full_like(t, syn.FAR))
    ts = t_in[:, None] + (stop - t_in)[:, None] * tt
    valid = ts < stop[:, None]
    pts = (o[:, None] + d[:, None] * ts[..., None])[valid]
    inbox = ((pts >= grid.bbox[0]) & (pts <= grid.bbox[1])).all(-1)
    pts = pts[inbox & ~inside_shapes(pts, 2 * math.sqrt(3) * CELL + 1e-3)]  # no cell within reach of a dilated shape
    assert pts.shape[0] > 10_000
    assert not grid.is_occupied(pts).any()
    # most of the box is empty
    assert grid.occupied.float().mean() < 0.35


def test_march_stops_at_the_true_surface(grid):
    o, d, t = surface_points(n_views=2)
    n = o.shape[0]
    near, far = torch.full((n, 1), syn.NEAR), torch.full((n, 1), syn.FAR)
    ts, ray_idx, evaluated = grid.march(o, d, near, far, torch.full((n,), 0.5), true_density, early_stop=1e-4)
    from render.packed import composite_packed

    h = 0.5 * grid.step
    out = composite_packed(true_density(o[ray_idx] + d[ray_idx] * ts[:, None]), torch.ones(ts.shape[0], 3),
                           ts - h, ts + h, ray_idx, n, None, far)
    hit = torch.isfinite(t)
    assert (out["opacity"][hit] > 0.999).all()
    assert (out["opacity"][~hit] < 1e-6).all()
    assert (out["depth"][hit, 0] - t[hit]).abs().max() < grid.step
    # early stop: far fewer density evaluations than steps through the box
    assert ts.shape[0] / n < 3 and evaluated / n < 40


def test_update_decays_and_keeps_state_in_buffers():
    g = OccupancyGrid(torch.tensor(syn.BBOX), res=8, step=0.01, decay=0.5)
    names = {k for k, _ in g.named_buffers()}
    assert {"opacity", "occupied", "occupied_box"} <= set(g.state_dict())
    assert "bbox" in names
    g.update(lambda p: torch.full((p.shape[0],), 1000.0), None, warmup=True)
    assert g.occupied.all()
    g.update(lambda p: torch.zeros(p.shape[0]), None, warmup=True)
    assert torch.allclose(g.opacity, torch.full_like(g.opacity, 0.5), atol=1e-3)  # max(old * decay, 0)
    # a random subset after warm-up touches only those cells
    before = g.opacity.clone()
    g.update(lambda p: torch.zeros(p.shape[0]), torch.Generator().manual_seed(0), warmup=False, n_cells=20)
    changed = (g.opacity != before).sum()
    assert 0 < changed <= 20


def test_silhouette_carving_keeps_every_surface_and_carves_the_box():
    """The visual hull from the built-in scene's training alphas contains every true surface
    point (cells are never carved through content) and is a small part of the box."""
    from datasets import load_scene
    from render.carving import silhouette_hull

    opts = DataOptions()
    opts.synthetic.resolution = 48
    scene = load_scene(opts, "train")
    g = OccupancyGrid(torch.tensor(syn.BBOX), res=RES, step=0.01)
    centres = g.cell_centres(torch.arange(RES ** 3))
    g.restrict(silhouette_hull(centres, scene.cameras, scene.alpha, g.cell_radius()))
    o, d, t = surface_points()
    hit = torch.isfinite(t)
    pts = o[hit] + d[hit] * t[hit, None]
    for s in (-0.5 * CELL, 0.0, 0.5 * CELL):
        assert g.is_occupied(pts + s * d[hit]).all()
    # true content fills ~5% of the box; the hull keeps it plus a margin, far less than the box
    solid = inside_shapes(centres).float().mean()
    kept = g.allowed.float().mean()
    assert solid < kept < 0.5
    # cells far from any content seen as background by the cameras are gone
    far_away = ~inside_shapes(centres, 0.6)
    assert g.allowed[far_away].float().mean() < 0.2
