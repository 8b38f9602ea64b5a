"""Grid-backed encodings of position: multiresolution hash grid, TensoRF vector-matrix factors,
dense voxel grid; and the spherical-harmonics encoding of directions.

Every position encoding maps world points (n, 3) inside `bbox` (2, 3) to features (n, out_dim);
points outside the box are clamped onto it. Interpolation is trilinear (bilinear x linear for
the factorised grid), so features are continuous in position; gradients reach only the grid
entries that the interpolation touched (the rest get exact zeros).

Hot-path notes (measured on a 2-core AVX-512 CPU, see benchmarks/): the hash grid uses
`F.embedding_bag` with per-sample weights for the 8-corner gather + weighted sum (one fused
kernel forward and backward instead of materialising (n, L, 8, F) tensors), and so do the
factorised grid's planes and lines and the dense grid (all channel-last).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nerf.fields import native_grids

_PRIMES = (1, 2654435761, 805459861)
_CORNERS = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.long)


class _BoxEncoding(nn.Module):
    """Base: holds the box the grid spans and maps world points to the unit cube [0, 1]^3.

    The box starts as the scene box; `fit_box` narrows it to where content can be (before
    training), so the same grid resolution spends its cells on the content. The box is saved
    with the weights; a state dict from before it was saved keeps the scene box."""

    def __init__(self, bbox):
        super().__init__()
        bbox = torch.as_tensor(bbox, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("box_lo", bbox[0].clone())
        self.register_buffer("box_size", (bbox[1] - bbox[0]).clone())

    def unit(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.float() - self.box_lo) / self.box_size).clamp(0.0, 1.0)

    def fit_box(self, bbox) -> None:
        """Span the grid over `bbox` (2, 3) from now on (call before training: it moves the cells)."""
        bbox = torch.as_tensor(bbox, dtype=torch.float32, device=self.box_lo.device).reshape(2, 3)
        if not bool((bbox[1] > bbox[0]).all()):
            raise ValueError(f"fit_box: empty box {bbox.tolist()}")
        self.box_lo.copy_(bbox[0])
        self.box_size.copy_(bbox[1] - bbox[0])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("box_lo", "box_size"):  # written before the box was saved: the scene box
            state_dict.setdefault(prefix + name, getattr(self, name).clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class HashGrid(_BoxEncoding):
    """Multiresolution hash encoding (Instant-NGP's idea, our own code).

    `n_levels` grids with resolutions growing geometrically from `base_res` to `max_res`; each
    level stores `n_features` per vertex in a table of 2**log2_size rows. Levels whose
    (res + 1)^3 vertices fit the table are indexed densely (no collisions), finer ones by the
    spatial hash xor(x * 1, y * 2654435761, z * 805459861) mod table size.
    Output: (n, n_levels * n_features), level-major.
    """

    def __init__(self, bbox, n_levels=16, n_features=2, log2_size=19, base_res=16, max_res=2048,
                 init_scale=1e-4):
        super().__init__(bbox)
        self.n_levels, self.n_features, self.table_size = n_levels, n_features, 2 ** log2_size
        growth = math.exp((math.log(max_res) - math.log(base_res)) / max(n_levels - 1, 1))
        res = [int(math.floor(base_res * growth ** lvl)) for lvl in range(n_levels)]
        self.resolutions = res
        # Per level: how many rows it really uses (dense levels need fewer than the table).
        sizes = [min((r + 1) ** 3, self.table_size) for r in res]
        offsets = [0]
        for s in sizes:
            offsets.append(offsets[-1] + s)
        self.level_sizes, self.level_offsets = sizes, offsets
        self.table = nn.Parameter(torch.empty(offsets[-1], n_features).uniform_(-init_scale, init_scale))
        self.register_buffer("res_t", torch.tensor(res, dtype=torch.float32), persistent=False)
        self.register_buffer("corners", _CORNERS.clone(), persistent=False)
        self.out_dim = n_levels * n_features

    def corner_indices(self, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the table (n, L, 8) and trilinear weights (n, L, 8) of unit-cube points (n, 3)."""
        pos = x01[:, None, :] * self.res_t[None, :, None]  # (n, L, 3)
        p0 = torch.minimum(pos.floor(), (self.res_t - 1)[None, :, None])
        frac = pos - p0
        p0 = p0.long()
        idx = []
        for lvl, r in enumerate(self.resolutions):
            c = p0[:, lvl, None, :] + self.corners  # (n, 8, 3)
            if (r + 1) ** 3 <= self.table_size:
                i = c[..., 0] + (r + 1) * (c[..., 1] + (r + 1) * c[..., 2])
            else:
                i = (c[..., 0] * _PRIMES[0]) ^ (c[..., 1] * _PRIMES[1]) ^ (c[..., 2] * _PRIMES[2])
                i = i & (self.table_size - 1)
            idx.append(i + self.level_offsets[lvl])
        idx = torch.stack(idx, 1)  # (n, L, 8)
        # weight of corner (a, b, c): prod over dims of frac (bit 1) or 1 - frac (bit 0)
        f = torch.stack([1.0 - frac, frac], -1)  # (n, L, 3, 2)
        w = (f[:, :, 0, self.corners[:, 0]] * f[:, :, 1, self.corners[:, 1]] * f[:, :, 2, self.corners[:, 2]])
        return idx, w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        with torch.no_grad():
            idx, w = self.corner_indices(self.unit(x))
        feats = _WeightedGather.apply(self.table, idx.reshape(n * self.n_levels, 8),
                                      w.reshape(n * self.n_levels, 8).to(self.table.dtype))
        return feats.reshape(n, self.n_levels * self.n_features)


class _WeightedGather(torch.autograd.Function):
    """out[b] = sum_k w[b, k] * table[idx[b, k]]: `embedding_bag` forward (one fused kernel),
    `index_add_` backward (measured ~3x faster on CPU than embedding_bag's own backward).
    Only the rows in `idx` receive gradient."""

    @staticmethod
    def forward(ctx, table, idx, w):
        ctx.save_for_backward(idx, w)
        ctx.table_shape = table.shape
        return F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)

    @staticmethod
    def backward(ctx, grad):
        idx, w = ctx.saved_tensors
        return _scatter_weighted(grad, idx, w, ctx.table_shape), None, None


def _scatter_weighted(grad: torch.Tensor, idx: torch.Tensor, w: torch.Tensor, table_shape) -> torch.Tensor:
    """Gradient of a weighted row gather: table_grad[idx[b, k]] += w[b, k] * grad[b]."""
    contrib = (grad[:, None, :] * w[..., None]).reshape(-1, table_shape[1])
    g = torch.zeros(table_shape, dtype=grad.dtype, device=grad.device)
    return g.index_add_(0, idx.reshape(-1), contrib)


class _StencilGather(torch.autograd.Function):
    """`_WeightedGather` for rows at fixed offsets from a base row: out[b] = sum_k w[b, k] *
    table[base[b] + offsets[k]] (offsets[0] = 0, all >= 0; e.g. a plane's 4 bilinear corners
    base, base + 1, base + r, base + r + 1). When there are at least as many points as table
    rows, the backward scatters each point once, at its base row, into K gradient slots (one
    index_add of n rows of K * C values instead of K * n rows of C) and then adds the slots
    together shifted by their offsets: the index_add sorts K times fewer indices. That pays on
    NDC training steps with many samples per ray; with few points per table row (lego's few
    samples per ray) zeroing K slots per row costs more than it saves, so those keep the
    per-corner scatter. When the weights need a gradient (positions that are learned, as in
    camera refinement), it is grad . table[row] per corner."""

    @staticmethod
    def forward(ctx, table, base, offsets, w):
        ctx.save_for_backward(base, w, table if ctx.needs_input_grad[3] else None)
        ctx.offsets, ctx.table_shape = offsets, table.shape
        idx = base[:, None] + torch.as_tensor(offsets, device=base.device)
        return F.embedding_bag(idx, table, mode="sum", per_sample_weights=w)

    @staticmethod
    def backward(ctx, grad):
        base, w, table = ctx.saved_tensors
        rows, c = ctx.table_shape
        k = len(ctx.offsets)
        grad_w = None
        if table is not None:
            idx = base[:, None] + torch.as_tensor(ctx.offsets, device=base.device)
            grad_w = (table[idx] * grad[:, None, :]).sum(-1)
        if base.shape[0] < rows:  # few points: one scatter row per corner
            idx = base[:, None] + torch.as_tensor(ctx.offsets, device=base.device)
            return _scatter_weighted(grad, idx, w, ctx.table_shape), None, None, grad_w
        contrib = (grad[:, None, :] * w[..., None]).reshape(-1, k * c)
        slots = torch.zeros(rows, k * c, dtype=grad.dtype, device=grad.device).index_add_(0, base, contrib)
        slots = slots.view(rows, k, c)
        g = slots[:, 0].contiguous()
        for j, off in enumerate(ctx.offsets[1:], start=1):
            if off < rows:  # (an offset past the table's end has no rows to receive)
                g[off:] += slots[:rows - off, j]
        return g, None, None, grad_w


def _vertex_linear(t: torch.Tensor, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lower vertex index and fraction of coordinates t in [0, 1] on a res-vertex axis."""
    pos = t * (res - 1)
    i0 = pos.floor().clamp(max=res - 2)
    return i0.long(), pos - i0


class DenseGrid(_BoxEncoding):
    """A dense voxel grid of `n_features` per vertex at `res`^3 vertices, interpolated trilinearly.
    Output: (n, n_features).

    Stored channel-last, (z, y, x, feature), and read with `_StencilGather` (8 corner rows per
    point), as the TensoRF planes are: on this CPU faster forward and backward than
    `F.grid_sample` on a channel-first volume (benchmarks/results holds the figures)."""

    def __init__(self, bbox, res=128, n_features=16, init_scale=1e-1):
        super().__init__(bbox)
        self.res = res
        self.grid = nn.Parameter(torch.empty(res, res, res, n_features).uniform_(-init_scale, init_scale))
        self.register_buffer("corners", _CORNERS.clone(), persistent=False)
        self.out_dim = n_features

    @torch.no_grad()
    def resize(self, res: int) -> None:
        """Resample the grid to `res`^3 vertices (trilinear, vertex-aligned): the same field on a
        finer lattice, for coarse-to-fine training. The parameter keeps its identity; its
        optimiser state no longer fits and must be dropped."""
        vol = self.grid.data.permute(3, 0, 1, 2)[None]
        vol = F.interpolate(vol, size=(res,) * 3, mode="trilinear", align_corners=True)
        self.grid.data = vol[0].permute(1, 2, 3, 0).contiguous()
        self.res = res

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "grid")
        if saved is not None and saved.dim() == 5 and saved.shape[0] == 1:  # channel-first, as saved before
            saved = state_dict[prefix + "grid"] = saved[0].permute(1, 2, 3, 0).contiguous()
        if (saved is not None and saved.shape != self.grid.shape and saved.dim() == 4
                and saved.shape[3] == self.grid.shape[3] and len(set(saved.shape[:3])) == 1):
            # saved after a coarse-to-fine resize (other mismatches are left to the load's error)
            self.grid.data = self.grid.data.new_empty(saved.shape)
            self.res = saved.shape[0]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = native_grids.dense_features(self.grid, self.box_lo, self.box_size, x)
        if fast is not None:  # on the CPU: one C pass per point, and one for the gradient
            return fast
        r, c = self.res, self.grid.shape[3]
        with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()):
            i0, f = _vertex_linear(self.unit(x), r)  # (n, 3), x y z
            base = (i0[:, 2] * r + i0[:, 1]) * r + i0[:, 0]
            fw = torch.stack([1 - f, f], -1)  # (n, 3, 2)
            bits = self.corners
            w = fw[:, 0, bits[:, 0]] * fw[:, 1, bits[:, 1]] * fw[:, 2, bits[:, 2]]  # (n, 8), corner k = x bit 0, y bit 1, z bit 2
        offsets = (0, 1, r, r + 1, r * r, r * r + 1, r * r + r, r * r + r + 1)
        return _StencilGather.apply(self.grid.view(-1, c), base, offsets, w.to(self.grid.dtype))

    def total_variation(self, cells: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared difference of neighbouring vertices along each axis, summed over axes.

        cells > 0: the same mean over that many vertices drawn at random (with `generator`),
        each against its next neighbour along every axis, as Plenoxels and DVGO sample their
        regulariser: a step then differentiates a few rows of the grid instead of all of it."""
        if cells <= 0:
            return sum(_mean_sq_diff(self.grid, d) for d in (0, 1, 2))
        r, c = self.res, self.grid.shape[3]
        zyx = torch.randint(0, r - 1, (cells, 3), generator=generator, device=self.grid.device)
        base = (zyx[:, 0] * r + zyx[:, 1]) * r + zyx[:, 2]
        flat = self.grid.view(-1, c)
        here = flat[base]
        return sum((flat[base + off] - here).square().mean() for off in (r * r, r, 1))


def _mean_sq_diff(x: torch.Tensor, dim: int) -> torch.Tensor:
    return (x.narrow(dim, 1, x.shape[dim] - 1) - x.narrow(dim, 0, x.shape[dim] - 1)).square().mean()


class TensoRFVM(_BoxEncoding):
    """TensoRF's vector-matrix factorisation (our own code): for each axis pair m in
    (xy, xz, yz) a plane P_m (res, res, n_comp) and for the remaining axis a line L_m
    (res, n_comp). Feature of point p: concat_m P_m(p_b, p_a) * L_m(p_w), bilinear in the plane
    (rows indexed by axis b, columns by axis a) and linear on the line. Output: (n, 3 * n_comp).
    A field that is a sum of such products is represented exactly at any point (see tests).

    Factors are stored channel-last and interpolated with `_StencilGather` (4 plane rows and
    2 line rows per point and factor): on this CPU that is ~3x faster forward+backward than
    `F.grid_sample` on channel-first planes, whose backward scatters one channel at a time."""

    PLANES = ((0, 1), (0, 2), (1, 2))
    LINES = (2, 1, 0)

    def __init__(self, bbox, res=128, n_comp=16, init_scale=1e-1):
        super().__init__(bbox)
        self.res, self.n_comp = res, n_comp
        self.planes = nn.Parameter(init_scale * torch.randn(3, res, res, n_comp))
        self.lines = nn.Parameter(init_scale * torch.randn(3, res, n_comp))
        self.register_buffer("plane_axes", torch.tensor(self.PLANES), persistent=False)
        self.register_buffer("line_axes", torch.tensor(self.LINES), persistent=False)
        self.out_dim = 3 * n_comp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fast = native_grids.tensorf_features(self.planes, self.lines, self.box_lo, self.box_size, x)
        if fast is not None:  # on the CPU: one C pass per point, and one for the gradient
            return fast
        n, r, c = x.shape[0], self.res, self.n_comp
        # interpolation weights carry a gradient only for learned positions (camera refinement)
        with torch.set_grad_enabled(x.requires_grad and torch.is_grad_enabled()):
            u = self.unit(x)  # (n, 3) in [0, 1]
            ia, fa = _vertex_linear(u[:, self.plane_axes[:, 0]], r)  # (n, 3): column axis of each plane
            ib, fb = _vertex_linear(u[:, self.plane_axes[:, 1]], r)  # row axis
            iw, fw = _vertex_linear(u[:, self.line_axes], r)
            m = torch.arange(3, device=x.device)
            base = (m * r * r + ib * r + ia)  # (n, 3); corners base, base + 1, base + r, base + r + 1
            p_w = torch.stack([(1 - fa) * (1 - fb), fa * (1 - fb), (1 - fa) * fb, fa * fb], -1)
            l0 = m * r + iw  # (n, 3); ends l0, l0 + 1
            l_w = torch.stack([1 - fw, fw], -1)
        planes = _StencilGather.apply(self.planes.view(-1, c), base.view(-1), (0, 1, r, r + 1),
                                      p_w.view(-1, 4).to(self.planes.dtype))
        lines = _StencilGather.apply(self.lines.view(-1, c), l0.view(-1), (0, 1), l_w.view(-1, 2).to(self.lines.dtype))
        return (planes * lines).view(n, 3 * c)

    @torch.no_grad()
    def resize(self, res: int) -> None:
        """Resample the factors to `res` vertices per axis (bilinear planes, linear lines, both
        vertex-aligned as `forward` reads them): the same field on a finer lattice, for TensoRF's
        coarse-to-fine training. The parameters keep their identity; their optimiser state no
        longer fits and must be dropped."""
        planes = self.planes.data.permute(0, 3, 1, 2)  # (3, c, r, r)
        planes = F.interpolate(planes, size=(res, res), mode="bilinear", align_corners=True)
        lines = F.interpolate(self.lines.data.permute(0, 2, 1), size=res, mode="linear", align_corners=True)
        self.planes.data = planes.permute(0, 2, 3, 1).contiguous()
        self.lines.data = lines.permute(0, 2, 1).contiguous()
        self.res = res

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        saved = state_dict.get(prefix + "planes")
        if (saved is not None and saved.shape != self.planes.shape and saved.dim() == 4
                and saved.shape[0] == 3 and saved.shape[1] == saved.shape[2] and saved.shape[3] == self.n_comp):
            # saved after a coarse-to-fine resize (other mismatches are left to the load's error)
            res = saved.shape[1]
            self.planes.data = self.planes.data.new_empty(saved.shape)
            self.lines.data = self.lines.data.new_empty((3, res, self.n_comp))
            self.res = res
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def total_variation(self, cells: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared difference of neighbouring entries along both plane axes and the lines
        (always over every entry: the factors are small; `cells` is the dense grid's)."""
        return _mean_sq_diff(self.planes, 1) + _mean_sq_diff(self.planes, 2) + _mean_sq_diff(self.lines, 1)


class WithDetail(nn.Module):
    """A voxel or factorised grid (`base`) with finer hash levels beside it (`detail`, a HashGrid
    on the same box), their features concatenated: the base grid's few coarse cells carry the
    scene's layout at the cost of one lookup, the hash levels add resolution only where training
    puts it (a hash table's rows are shared, so fine levels cost memory in proportion to the
    table, not to the cube of their resolution). Resizing and total variation apply to the base."""

    def __init__(self, base: nn.Module, detail: HashGrid):
        super().__init__()
        self.base, self.detail = base, detail
        self.out_dim = base.out_dim + detail.out_dim

    @property
    def res(self) -> int:
        return self.base.res

    def resize(self, res: int) -> None:
        self.base.resize(res)

    def fit_box(self, bbox) -> None:
        self.base.fit_box(bbox)
        self.detail.fit_box(bbox)

    def total_variation(self, cells: int = 0, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.base.total_variation(cells, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base(x), self.detail(x)], -1)


class SphericalHarmonics(nn.Module):
    """Real spherical harmonics of unit directions (n, 3) up to `degree` - 1 (degree 4 -> 16 terms,
    5 -> 25: sharper view-dependent lobes, such as a highlight, for a few more head inputs)."""

    def __init__(self, degree: int = 4):
        super().__init__()
        if not 1 <= degree <= 5:
            raise ValueError(f"spherical harmonics degree must be 1..5, got {degree}")
        self.degree = degree
        self.out_dim = degree * degree

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        x, y, z = d.unbind(-1)
        out = [torch.full_like(x, 0.28209479177387814)]
        if self.degree > 1:
            c1 = 0.4886025119029199
            out += [-c1 * y, c1 * z, -c1 * x]
        if self.degree > 2:
            xx, yy, zz = x * x, y * y, z * z
            out += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                    0.31539156525252005 * (2 * zz - xx - yy), -1.0925484305920792 * x * z,
                    0.5462742152960396 * (xx - yy)]
        if self.degree > 3:
            out += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * x * y * z,
                    -0.4570457994644658 * y * (4 * zz - xx - yy), 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
                    -0.4570457994644658 * x * (4 * zz - xx - yy), 1.445305721320277 * z * (xx - yy),
                    -0.5900435899266435 * x * (xx - 3 * yy)]
        if self.degree > 4:
            out += [2.5033429417967046 * x * y * (xx - yy), -1.7701307697799304 * y * z * (3 * xx - yy),
                    0.9461746957575601 * x * y * (7 * zz - 1), -0.6690465435572892 * y * z * (7 * zz - 3),
                    0.10578554691520431 * (35 * zz * zz - 30 * zz + 3), -0.6690465435572892 * x * z * (7 * zz - 3),
                    0.47308734787878004 * (xx - yy) * (7 * zz - 1), -1.7701307697799304 * x * z * (xx - 3 * yy),
                    0.6258357354491761 * (xx * (xx - 3 * yy) - yy * (3 * xx - yy))]
        return torch.stack(out, -1)


def build_encoding(fc, bbox) -> nn.Module:
    """The position encoding named by `fc.encoding` (a FastConfig)."""
    if fc.encoding == "hash":
        return HashGrid(bbox, fc.hash_levels, fc.hash_features, fc.hash_log2_size, fc.hash_base_res, fc.hash_max_res)
    res = min(fc.grid_res_start or fc.grid_res, fc.grid_res)  # coarse-to-fine starts coarse (see FastConfig)
    if fc.encoding == "tensorf":
        base = TensoRFVM(bbox, res, fc.tensorf_comp)
    elif fc.encoding == "dense":
        base = DenseGrid(bbox, res, fc.dense_features)
    else:
        raise ValueError(f"unknown encoding {fc.encoding!r}")
    if not fc.detail_levels:
        return base
    # the detail levels start at twice the base grid's final resolution
    return WithDetail(base, HashGrid(bbox, fc.detail_levels, fc.hash_features, fc.hash_log2_size,
                                     2 * fc.grid_res, max(fc.hash_max_res, 2 * fc.grid_res)))
