"""Grid encodings: hash-grid continuity and sparse gradients, exact low-rank factorised fields,
dense-grid interpolation, spherical harmonics."""
import pytest
import torch

from nerf.fields.grids import DenseGrid, HashGrid, SphericalHarmonics, TensoRFVM

BOX = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]


def _hash(**kw):
    torch.manual_seed(0)
    enc = HashGrid(BOX, **{"n_levels": 4, "n_features": 2, "log2_size": 12, "base_res": 4, "max_res": 64, **kw})
    with torch.no_grad():
        enc.table.normal_()  # large random entries so discontinuities would show
    return enc


def test_hash_grid_continuous_across_cell_borders():
    enc = _hash()
    g = torch.Generator().manual_seed(1)
    # points exactly on cell borders of the finest level, approached from both sides
    res = enc.resolutions[-1]
    base = torch.rand(200, 3, generator=g) * 1.6 - 0.8
    border = torch.round((base[:, 0] + 1) / 2 * res) / res * 2 - 1
    base[:, 0] = border
    eps = torch.tensor([1e-5, 0.0, 0.0])
    left, right, on = enc(base - eps), enc(base + eps), enc(base)
    assert (left - right).abs().max() < 2e-3
    assert (on - left).abs().max() < 2e-3
    # and jumps are large across a whole cell (so the check above is meaningful)
    assert (enc(base) - enc(base + 2.0 / res)).abs().max() > 0.1


def test_hash_grid_interpolates_vertex_values():
    enc = _hash(n_levels=1, base_res=4, max_res=4)  # one dense level: vertex values are table rows
    r = 4
    v = torch.tensor([[1, 2, 3]])
    x = v.float() / r * 2 - 1
    row = v[0, 0] + (r + 1) * (v[0, 1] + (r + 1) * v[0, 2])
    assert torch.allclose(enc(x)[0], enc.table[row], atol=1e-6)


def test_hash_grid_gradients_reach_only_touched_entries():
    enc = _hash()
    x = torch.rand(5, 3) * 2 - 1
    enc(x).pow(2).sum().backward()
    idx, w = enc.corner_indices(enc.unit(x))
    touched = torch.zeros(enc.table.shape[0], dtype=torch.bool)
    touched[idx.reshape(-1)] = True
    grad_rows = enc.table.grad.abs().sum(-1) > 0
    assert grad_rows.sum() > 0
    assert not (grad_rows & ~touched).any()  # nothing outside the touched rows
    nonzero_w = torch.zeros_like(touched)
    nonzero_w[idx.reshape(-1)[w.reshape(-1) > 1e-6]] = True
    assert (grad_rows == nonzero_w).float().mean() > 0.99  # and every touched row with weight gets some
    # matches autograd through a plain gather
    table = enc.table.detach().clone().requires_grad_()
    ref = (table[idx] * w[..., None]).sum(2).reshape(5, -1)
    ref.pow(2).sum().backward()
    assert torch.allclose(table.grad, enc.table.grad, atol=1e-5)


def test_tensorf_reconstructs_low_rank_field_exactly():
    torch.manual_seed(0)
    res, comp = 9, 3
    enc = TensoRFVM(BOX, res=res, n_comp=comp)
    # known factors: f_m,c(p) = A_m,c(p_a, p_b) * B_m,c(p_w), each multilinear on the grid
    A = torch.randn(3, comp, res, res)
    B = torch.randn(3, comp, res)
    with torch.no_grad():
        enc.planes.copy_(A.permute(0, 2, 3, 1))  # stored [m, row (axis b), column (axis a), c]
        enc.lines.copy_(B.permute(0, 2, 1))
    # on the vertices: exact products
    i, j, k = 2, 5, 7
    coord = torch.tensor([[i, j, k]], dtype=torch.float32) / (res - 1) * 2 - 1
    out = enc(coord).reshape(3, comp)
    ijk = (i, j, k)
    for m, ((a, b), w) in enumerate(zip(TensoRFVM.PLANES, TensoRFVM.LINES)):
        # plane indexed [H=b, W=a]
        expect = A[m, :, ijk[b], ijk[a]] * B[m, :, ijk[w]]
        assert torch.allclose(out[m], expect, atol=1e-5)
    # anywhere: bilinear(A) * linear(B), the exact low-rank field
    p = torch.rand(50, 3) * 2 - 1
    u = (p + 1) / 2 * (res - 1)

    def lin(vals, t):  # vals (..., res), t (n,) -> (n, ...)
        i0 = t.floor().long().clamp(max=res - 2)
        f = t - i0
        return vals[..., i0] * (1 - f) + vals[..., i0 + 1] * f

    out = enc(p).reshape(50, 3, comp)
    for m, ((a, b), w) in enumerate(zip(TensoRFVM.PLANES, TensoRFVM.LINES)):
        rows = lin(A[m].transpose(-1, -2), u[:, a])  # (comp, res_b? ...)
        # rows: interpolate along W=a first: A[m, c, h, :] over a -> (comp, res_h, n)
        along_a = lin(A[m], u[:, a])  # (comp, res, n) indexed [c, h, n]
        n_idx = torch.arange(50)
        hb = u[:, b]
        i0 = hb.floor().long().clamp(max=res - 2)
        f = hb - i0
        plane = along_a[:, i0, n_idx] * (1 - f) + along_a[:, i0 + 1, n_idx] * f  # (comp, n)
        line = lin(B[m], u[:, w])  # (comp, n)
        assert torch.allclose(out[:, m, :], (plane * line).t(), atol=1e-5)
        del rows


@pytest.mark.parametrize("n", [60, 400])  # fewer / more points than the 3 * 7^2 plane rows: both backward paths
def test_tensorf_gradients_match_plain_autograd(n):
    """The stencil backward (one scatter per point, slots shifted by the corner offsets) gives
    the same factor gradients as autograd through plain bilinear/linear indexing, including
    points on the box faces (clamped corners) and many points sharing cells."""
    torch.manual_seed(1)
    res, comp = 7, 4
    enc = TensoRFVM(BOX, res=res, n_comp=comp)
    p = torch.rand(n, 3) * 2 - 1
    p[:20] = p[:20].sign()  # corners and faces of the box
    p[20:40] = p[40:60]  # repeated points: shared cells
    up = torch.randn(n, 3 * comp)
    (enc(p) * up).sum().backward()
    planes, lines = enc.planes.detach().clone().requires_grad_(), enc.lines.detach().clone().requires_grad_()
    u = (p + 1) / 2 * (res - 1)
    i0 = u.floor().long().clamp(max=res - 2)
    f = u - i0
    feats = []
    for m, ((a, b), w) in enumerate(zip(TensoRFVM.PLANES, TensoRFVM.LINES)):
        ia, ib, fa, fb = i0[:, a], i0[:, b], f[:, a, None], f[:, b, None]
        P = planes[m]  # [row (axis b), column (axis a), c]
        plane = (P[ib, ia] * (1 - fa) * (1 - fb) + P[ib, ia + 1] * fa * (1 - fb)
                 + P[ib + 1, ia] * (1 - fa) * fb + P[ib + 1, ia + 1] * fa * fb)
        line = lines[m][i0[:, w]] * (1 - f[:, w, None]) + lines[m][i0[:, w] + 1] * f[:, w, None]
        feats.append(plane * line)
    (torch.cat(feats, -1) * up).sum().backward()
    assert torch.allclose(enc.planes.grad, planes.grad, atol=1e-5)
    assert torch.allclose(enc.lines.grad, lines.grad, atol=1e-5)


def test_dense_grid_trilinear():
    enc = DenseGrid(BOX, res=5, n_features=2)
    with torch.no_grad():  # a linear field is reproduced exactly by trilinear interpolation
        z, y, x = torch.meshgrid(*[torch.linspace(-1, 1, 5)] * 3, indexing="ij")
        enc.grid[..., 0] = 2 * x - y + 0.5 * z
        enc.grid[..., 1] = 1.0
    p = torch.rand(30, 3) * 2 - 1
    out = enc(p)
    assert torch.allclose(out[:, 0], 2 * p[:, 0] - p[:, 1] + 0.5 * p[:, 2], atol=1e-5)
    assert torch.allclose(out[:, 1], torch.ones(30), atol=1e-6)


@pytest.mark.parametrize("n", [50, 3000])  # fewer and more points than grid vertices
def test_dense_grid_matches_grid_sample_and_reads_channel_first_weights(n):
    """The gathered grid equals trilinear `F.grid_sample` on the same volume, values and gradients
    (of the grid and, for learned positions, of the points); a state dict saved channel-first
    (1, features, z, y, x) loads to the same field."""
    enc = DenseGrid(BOX, res=9, n_features=3)
    vol = enc.grid.detach().permute(3, 0, 1, 2)[None].clone().requires_grad_(True)
    g = torch.Generator().manual_seed(1)
    p = torch.rand(n, 3, generator=g) * 2 - 1
    p[:8] = torch.tensor([[(k & 1) * 2 - 1, (k >> 1 & 1) * 2 - 1, (k >> 2 & 1) * 2 - 1] for k in range(8)])  # box corners
    p.requires_grad_(True)
    q = p.detach().clone().requires_grad_(True)
    up = torch.randn(n, 3, generator=g)
    (enc(p) * up).sum().backward()
    ref = torch.nn.functional.grid_sample(vol, q.view(1, -1, 1, 1, 3), mode="bilinear", align_corners=True)
    (ref.view(3, -1).t() * up).sum().backward()
    assert torch.allclose(enc(p.detach()), ref.view(3, -1).t().detach(), atol=1e-6)
    assert torch.allclose(enc.grid.grad, vol.grad[0].permute(1, 2, 3, 0), atol=1e-5)
    # inside the box (at its upper faces grid_sample takes the slope towards its zero padding, the grid the last cell's)
    assert torch.allclose(p.grad[8:], q.grad[8:], atol=1e-4)
    old = DenseGrid(BOX, res=5, n_features=3)
    old.load_state_dict({"grid": vol.detach(), "box_lo": enc.box_lo, "box_size": enc.box_size})
    assert old.res == 9 and torch.allclose(old(p.detach()), enc(p.detach()), atol=1e-6)


@pytest.mark.parametrize("degree", [4, 5])
def test_spherical_harmonics_orthonormal(degree):
    """Integrated over a Fibonacci sphere (near-uniform, so the mean is the integral over 4 pi to
    about 1e-5 here), the basis functions are orthonormal: a wrong constant or term shows."""
    n = 100_000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    phi = torch.pi * (1 + 5 ** 0.5) * i
    r = (1 - z * z).sqrt()
    d = torch.stack([r * phi.cos(), r * phi.sin(), z], -1)
    y = SphericalHarmonics(degree)(d)
    gram = 4 * torch.pi * (y.t() @ y) / n
    assert torch.allclose(gram, torch.eye(degree * degree, dtype=torch.float64), atol=1e-5)


def test_total_variation_of_known_factors():
    """TV is zero for constant factors and the mean squared step of a ramp: a ramp of slope s per
    vertex along one plane axis only gives s^2 (one term), along every axis 3 s^2."""
    enc = TensoRFVM(torch.tensor([[0.0] * 3, [1.0] * 3]), res=16, n_comp=2)
    with torch.no_grad():
        enc.planes.fill_(0.3)
        enc.lines.fill_(-1.0)
    assert float(enc.total_variation().detach()) == 0.0
    ramp = torch.arange(16, dtype=torch.float32) * 0.5
    with torch.no_grad():
        enc.planes.copy_(ramp[None, :, None, None].expand(3, 16, 16, 2))
    assert abs(float(enc.total_variation().detach()) - 0.25) < 1e-6
    with torch.no_grad():
        enc.planes.copy_((ramp[:, None] + ramp[None, :])[None, :, :, None].expand(3, 16, 16, 2))
        enc.lines.copy_(ramp[None, :, None].expand(3, 16, 2))
    assert abs(float(enc.total_variation().detach()) - 0.75) < 1e-6
    dense = DenseGrid(torch.tensor([[0.0] * 3, [1.0] * 3]), res=8, n_features=3)
    with torch.no_grad():
        dense.grid.copy_(torch.arange(8.0)[None, None, :, None] + torch.tensor([0.0, 5.0, -3.0]))  # features differ
    assert abs(float(dense.total_variation().detach()) - 1.0) < 1e-6
    assert abs(float(dense.total_variation(cells=50).detach()) - 1.0) < 1e-6  # a ramp: every sample agrees


def test_sampled_total_variation_estimates_the_full_one():
    """On a random dense grid the TV over random vertices (tv_cells) averages to the full TV (its
    edge vertices aside, within 2%), the same generator state draws the same cells, and the
    gradient reaches only the vertices drawn and their next neighbours."""
    dense = DenseGrid(torch.tensor([[0.0] * 3, [1.0] * 3]), res=12, n_features=2)
    full = float(dense.total_variation().detach())
    est = float(dense.total_variation(cells=400_000, generator=torch.Generator().manual_seed(0)).detach())
    assert abs(est / full - 1) < 0.02
    a, b = (float(dense.total_variation(cells=64, generator=torch.Generator().manual_seed(3)).detach()) for _ in range(2))
    assert a == b
    dense.total_variation(cells=5, generator=torch.Generator().manual_seed(1)).backward()
    touched = (dense.grid.grad.abs().sum(-1) > 0).sum()
    assert 5 < touched <= 20
