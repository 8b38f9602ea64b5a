"""The occupancy grid against the built-in scene's exact geometry (datasets/synthetic.py)."""
import math

import pytest
import torch

from nerf.datasets import synthetic as syn
from nerf.datasets.options import DataOptions
from nerf.render.occupancy import OccupancyGrid, ray_box
from nerf.render.rays import image_rays

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
    from nerf.render.packed import composite_packed

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
    # after warm-up a refresh samples a random subset, and every cell decays, sampled or not
    g.update(lambda p: torch.full((p.shape[0],), 1000.0), torch.Generator().manual_seed(0), warmup=False, n_cells=20)
    refreshed = g.opacity > 0.9
    assert 0 < refreshed.sum() <= 20
    assert torch.allclose(g.opacity[~refreshed], torch.full_like(g.opacity[~refreshed], 0.25), atol=1e-3)


def test_silhouette_carving_keeps_every_surface_and_carves_the_box():
    """The visual hull from the built-in scene's training alphas contains every true surface
    point (cells are never carved through content) and is a small part of the box."""
    from nerf.datasets import load_scene
    from nerf.render.carving import silhouette_hull

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


def test_coarse_strides_keep_every_occupied_step():
    """Candidates found through the coarse level are exactly the steps, taken one by one, that land
    in occupied cells: sparse random blobs, rays from every direction, random offsets."""
    gen = torch.Generator().manual_seed(3)
    g = OccupancyGrid(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]), res=64, step=2 * 3 ** 0.5 / 200)
    occ = torch.zeros(64, 64, 64, dtype=torch.bool)
    for c in torch.randint(4, 60, (12, 3), generator=gen):
        occ[c[0] - 3:c[0] + 2, c[1] - 2:c[1] + 3, c[2] - 1:c[2] + 4] = True
    g.restrict(occ.reshape(-1))
    assert g._stride() > 1 and g.occupied.float().mean() < 0.05
    n = 3000
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    o = torch.rand(n, 3, generator=gen) * 1.6 - 0.8 - 2.5 * d
    near, far = torch.zeros(n, 1), torch.full((n, 1), 6.0)
    offset = torch.rand(n, generator=gen)
    t, ray_idx = g.candidates(o, d, near, far, offset)
    # reference: every step of every ray from where it enters the box around the occupied cells
    # (the stepping's anchor), tested one by one against the fine grid
    t_in, t_out = ray_box(o, d, g.occupied_box[0], g.occupied_box[1])
    k = torch.arange(int(6.0 / g.step) + 1, dtype=torch.float32)
    ts = t_in[:, None] + (k[None, :] + offset[:, None]) * g.step  # (n, K)
    inside = ts < t_out[:, None]
    occ_ref = g.is_occupied((o[:, None, :] + d[:, None, :] * ts[..., None]).reshape(-1, 3)).view(n, -1) & inside
    r_ref, c_ref = occ_ref.nonzero(as_tuple=True)
    assert r_ref.numel() > 1000
    assert torch.equal(ray_idx, r_ref)
    assert (t - ts[r_ref, c_ref]).abs().max() < 1e-4


@pytest.mark.parametrize("contraction,growth", [("linf", "linear"), ("l2", "quadratic")])
def test_coarse_strides_keep_every_occupied_step_in_contracted_space(contraction, growth):
    """The same exactness on a contracted grid, where steps are uniform in the warped distance and
    grow past the knee: the coarse strides drop only steps that land in empty cells. The reference
    maps each point through `is_occupied` (contract, then the cell) as the field's lookups do."""
    gen = torch.Generator().manual_seed(5)
    g = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 64, 0.004, contraction=contraction, radius=0.5, knee=0.5,
                      centre=(0.1, -0.05, 0.02), growth=growth)
    occ = torch.zeros(64, 64, 64, dtype=torch.bool)
    for c in torch.randint(3, 61, (16, 3), generator=gen):
        occ[c[0] - 2:c[0] + 2, c[1] - 1:c[1] + 2, c[2] - 2:c[2] + 3] = True
    g.restrict(occ.reshape(-1))
    assert g._stride() > 1
    n = 2000
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    o = torch.rand(n, 3, generator=gen) * 0.4 - 0.2
    near, far = torch.full((n, 1), 0.02), torch.full((n, 1), 30.0)
    offset = torch.rand(n, generator=gen)
    t, ray_idx = g.candidates(o, d, near, far, offset)
    s_in, counts = g.ray_steps(o, d, near, far, offset)
    k = torch.arange(int(counts.max()), dtype=torch.float32)
    ss = s_in[:, None] + (k[None, :] + offset[:, None]) * g.step  # (n, K) warped distances
    ts = g.to_t(ss)
    occ_ref = g.is_occupied((o[:, None, :] + d[:, None, :] * ts[..., None]).reshape(-1, 3)).view(n, -1)
    occ_ref &= k[None, :] < counts[:, None]
    r_ref, c_ref = occ_ref.nonzero(as_tuple=True)
    assert r_ref.numel() > 1000
    assert torch.equal(ray_idx, r_ref)
    assert torch.allclose(t, ts[r_ref, c_ref], rtol=1e-5, atol=1e-5)


def test_windowed_marching_keeps_the_same_samples():
    """march_field walks rays in windows of steps (the next window only for rays still alive):
    the kept samples are exactly those of marching every step at once, on a contracted grid
    whose rays run hundreds of steps past a dense blob."""
    g = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 32, 0.02, contraction="linf", radius=0.5, knee=0.5)

    def density(x):  # a dense ball, a faint fog everywhere else
        return torch.where((x - torch.tensor([0.0, 0.0, 0.3])).norm(dim=-1) < 0.2, 40.0, 0.05)

    gen = torch.Generator().manual_seed(0)
    n = 500
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 1.0]), dim=-1)
    o = torch.zeros(n, 3)
    near, far = torch.full((n, 1), 0.05), torch.full((n, 1), 16.0)
    offset = torch.rand(n, generator=gen)
    t_all, ray_all, _ = g.march(o, d, near, far, offset, density)  # one window holds every step
    assert int(g.ray_steps(o, d, near, far, offset)[1].max()) < OccupancyGrid.WINDOW
    t, ray_idx, _, _, _ = g.march_field(o, d, near, far, offset, lambda p, _: density(p), window=4)  # a stride, then doubling
    assert torch.equal(ray_idx, ray_all) and torch.allclose(t, t_all)
    stopped = torch.bincount(ray_idx, minlength=n) < torch.bincount(g.candidates(o, d, near, far, offset)[1], minlength=n)
    assert stopped.float().mean() > 0.3  # some rays do stop in the blob


def test_render_variants_marches_through_a_commits_occupancy_code(monkeypatch):
    """benchmarks/render_variants.py --occupancy-at COMMIT swaps a trained grid's class for the
    commit's: at HEAD, when render/occupancy.py has no uncommitted change, it lists exactly the
    steps the working tree's code lists."""
    import shutil
    import subprocess

    from conftest import ROOT
    if shutil.which("git") is None or subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT,
                                                     capture_output=True).returncode != 0:
        pytest.skip("needs the project's git history")
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is not installed; the path is restored after
    from benchmarks.render_variants import occupancy_class_at
    gen = torch.Generator().manual_seed(2)
    g = OccupancyGrid([[-2.0] * 3, [2.0] * 3], 32, 0.01, contraction="linf", radius=0.5, knee=0.5)
    g.restrict(torch.rand(32 ** 3, generator=gen) < 0.1)
    n = 300
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    o, near, far, offset = torch.zeros(n, 3), torch.full((n, 1), 0.05), torch.full((n, 1), 20.0), torch.rand(n, generator=gen)
    t, ray_idx = g.candidates(o, d, near, far, offset)
    g.__class__ = occupancy_class_at("HEAD")
    t_head, ray_head = g.candidates(o, d, near, far, offset)
    assert type(g).__module__ != OccupancyGrid.__module__ and ray_idx.numel() > 1000
    edited = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "render/occupancy.py"], cwd=ROOT).returncode
    if edited == 0:  # the same code, read from git
        assert torch.equal(ray_idx, ray_head) and torch.equal(t, t_head)
    else:  # a change in progress may list other steps; the commit's code still lists some
        assert ray_head.numel() > 1000


def test_listing_is_exact_on_a_grid_too_fine_for_float_indices():
    """Above 2^24 cells the listing forms cell indices in integers instead of float32: the steps
    it lists are still exactly those that land in occupied cells, taken one by one."""
    gen = torch.Generator().manual_seed(7)
    res = 260
    g = OccupancyGrid(torch.tensor([[-1.0] * 3, [1.0] * 3]), res=res, step=2 * 3 ** 0.5 / 600)
    assert res ** 3 > 1 << 24
    occ = torch.zeros(res, res, res, dtype=torch.bool)
    for c in torch.randint(20, res - 20, (30, 3), generator=gen):
        occ[c[0] - 12:c[0] + 10, c[1] - 9:c[1] + 13, c[2] - 11:c[2] + 11] = True
    g.restrict(occ.reshape(-1))
    n = 1000
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    o = torch.rand(n, 3, generator=gen) * 1.6 - 0.8 - 2.5 * d
    near, far, offset = torch.zeros(n, 1), torch.full((n, 1), 6.0), torch.rand(n, generator=gen)
    t, ray_idx = g.candidates(o, d, near, far, offset)
    t_in, t_out = ray_box(o, d, g.occupied_box[0], g.occupied_box[1])
    k = torch.arange(int(6.0 / g.step) + 1, dtype=torch.float32)
    ts = t_in[:, None] + (k[None, :] + offset[:, None]) * g.step
    occ_ref = g.is_occupied((o[:, None, :] + d[:, None, :] * ts[..., None]).reshape(-1, 3)).view(n, -1)
    occ_ref &= ts < t_out[:, None]
    r_ref, c_ref = occ_ref.nonzero(as_tuple=True)
    assert r_ref.numel() > 5000
    assert torch.equal(ray_idx, r_ref)
    assert (t - ts[r_ref, c_ref]).abs().max() < 1e-4
