"""An occupancy grid over the scene box: skip empty space and stop rays early.

The grid holds, per cell of a res^3 lattice over the box, a running estimate of the opacity
(alpha over one marching step) the field has there, refreshed from a density callable
(Instant-NGP's scheme, our own code): each refresh evaluates the density at one random point
in a set of cells (all cells during warm-up, then a random subset plus a random subset of the
occupied ones), keeps max(old * decay, new), and marks a cell occupied when its value exceeds
min(threshold, mean); every visited cell's value decays at every refresh, sampled or not. State
lives in buffers so it is saved with a model's state dict.

Marching (`march`) steps each ray through the box at a fixed step, keeps the steps that fall in
occupied cells (first in strides of several steps against a coarse, dilated copy of the grid, so
long empty stretches cost one test per stride, then step by step inside the strides that may hold
content), and then evaluates density in rounds of growing size (8, 16, 32, ... steps per
ray) so that a ray stops as soon as its transmittance drops below `early_stop`: no Python loop
over rays or samples, a handful of rounds per batch. The candidate steps come in windows (the
first 256 steps of every ray, then the next 512 of the rays still alive, and so on), so a ray
that stops at a surface never has the steps behind it generated. It returns packed samples (see
`render.packed`) that matter for compositing.

Unbounded scenes (`contraction` l2 or linf): the grid covers the contracted world [-2, 2]^3
(`render.contraction`, around a `centre` with a `radius` that maps to the unit ball), and rays step
uniformly in a warped distance s: t = s up to a `knee`, then t = knee * exp(s / knee - 1), so beyond
the knee a step grows in proportion to the distance travelled (instant-ngp's cone stepping) and far
space costs a number of steps that grows only with log(far). With `growth` "quadratic" a step
grows with the square of the distance instead: s = 2 knee - knee^2 / t beyond the knee (uniform in
disparity, as mip-NeRF 360 spaces its far samples), which is how fast the contracted grid's cells
grow with distance, so every cell gets about as many steps and the whole of space beyond the knee
costs as many steps as the stretch before it. The same stride test applies: one stride never spans
more than a coarse cell of the contracted grid.

No learned parameters; the density is any callable positions (m, 3) -> (m,).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nerf.render import native_march
from nerf.render.contraction import contract, uncontract
from nerf.render.packed import exclusive_segment_cumsum, segment_starts, tau_from_alpha

CONTRACTIONS = {"l2": 2.0, "linf": float("inf")}
STEP_GROWTH = {"linear": 1, "quadratic": 2}  # how a contracted march's step grows beyond the knee


def ray_box(origins: torch.Tensor, dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Entry and exit distances (n,) of rays with the box [lo, hi] (exit < entry on a miss)."""
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    inv = 1.0 / safe
    t0, t1 = (lo - origins) * inv, (hi - origins) * inv
    return torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)


class OccupancyGrid(nn.Module):
    """res^3 occupancy over `bbox` (2, 3); `step` is the marching step the opacities refer to.

    contraction "l2" or "linf": the grid lives in contracted space (`bbox` is then [-2, 2]^3), world
    points x map to contract((x - centre) / radius); `knee` (world units, > 0) is the distance
    along a ray beyond which steps grow with distance, in proportion to it (`growth` linear) or
    to its square (quadratic; see the module docstring)."""

    def __init__(self, bbox, res: int = 128, step: float = 0.01, threshold: float = 0.01, decay: float = 0.95,
                 contraction: str = "none", centre=(0.0, 0.0, 0.0), radius: float = 1.0, knee: float = 0.0,
                 growth: str = "linear"):
        super().__init__()
        bbox = torch.as_tensor(bbox, dtype=torch.float32).reshape(2, 3)
        self.res, self.step, self.threshold, self.decay = int(res), float(step), float(threshold), float(decay)
        if contraction not in ("none", *CONTRACTIONS):
            raise ValueError(f"contraction must be none, l2 or linf, got {contraction!r}")
        self.order = CONTRACTIONS.get(contraction)  # None: the grid is in world space
        self.centre = torch.as_tensor(centre, dtype=torch.float32).reshape(3)
        self.radius, self.knee = float(radius), float(knee) if contraction != "none" else 0.0
        if growth not in STEP_GROWTH:
            raise ValueError(f"growth must be {' or '.join(STEP_GROWTH)}, got {growth!r}")
        self.power = STEP_GROWTH[growth]  # a step beyond the knee: step * (t / knee) ** power
        self.register_buffer("bbox", bbox.clone())
        # Opacity estimate per cell; -1 marks a cell never visited, which counts as occupied.
        self.register_buffer("opacity", torch.full((self.res ** 3,), -1.0))
        self.register_buffer("occupied", torch.ones(self.res ** 3, dtype=torch.bool))
        # Box around the occupied cells: rays are clipped to it before stepping.
        self.register_buffer("occupied_box", bbox.clone())
        # Cells that may ever be occupied (False: known empty, e.g. carved by the silhouettes).
        self.register_buffer("allowed", torch.ones(self.res ** 3, dtype=torch.bool))
        self._coarse = None  # derived from `occupied` on first use (see `coarse_level`)
        self.register_load_state_dict_post_hook(lambda module, _: setattr(module, "_coarse", None))
        if self.order == 2:  # cells wholly outside the contracted ball are never reached
            centres = self.cell_points(torch.arange(self.res ** 3), torch.full((self.res ** 3, 3), 0.5), world=False)
            self.allowed.copy_(centres.norm(dim=-1) < 2.0 + self.cell_radius())
            self.occupied.copy_(self.allowed)

    @property
    def contracted(self) -> bool:
        return self.order is not None

    def to_grid(self, x: torch.Tensor) -> torch.Tensor:
        """World points (..., 3) -> the grid's space (contracted when the grid is)."""
        if self.order is None:
            return x
        return contract((x - self.centre.to(x.device)) / self.radius, self.order)

    def from_grid(self, y: torch.Tensor) -> torch.Tensor:
        """The grid's space (..., 3) -> world points (the inverse of `to_grid`)."""
        if self.order is None:
            return y
        return uncontract(y, self.order) * self.radius + self.centre.to(y.device)

    # ------------------------------------------------------------------ step warp
    def to_s(self, t: torch.Tensor) -> torch.Tensor:
        """Distance along a ray -> the warped distance in which steps are uniform."""
        k = self.knee
        if k <= 0:
            return t
        if self.power == 2:
            return torch.where(t <= k, t, 2.0 * k - k * k / t.clamp_min(k))
        return torch.where(t <= k, t, k + k * torch.log(t.clamp_min(k) / k))

    def to_t(self, s: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_s` (quadratic growth: s below 2 knee, the warped distance of infinity)."""
        k = self.knee
        if k <= 0:
            return s
        if self.power == 2:
            return torch.where(s <= k, s, k * k / (2.0 * k - s.clamp(k, 2.0 * k * (1 - 1e-6))))
        return torch.where(s <= k, s, k * torch.exp((s.clamp_min(k) - k) / k))

    def intervals(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The interval [t_start, t_end] (m,) each of a step's midpoint t (m,) stands for."""
        half = 0.5 * self.step
        if self.knee <= 0:
            return t - half, t + half
        s = self.to_s(t)
        return self.to_t(s - half), self.to_t(s + half)

    def local_step(self, x: torch.Tensor) -> torch.Tensor | float:
        """The marching step (world units) near world points x (m, 3): the fixed step, or with cone
        stepping the step at the distance from the centre (a ray's distance to a point differs
        from it by at most the cameras' distance to the centre, which the knee includes)."""
        if self.knee <= 0:
            return self.step
        dist = (x - self.centre.to(x.device)).norm(dim=-1)
        return self.step * (dist / self.knee).clamp_min(1.0) ** self.power

    def restrict(self, allowed: torch.Tensor) -> None:
        """Mark the cells where `allowed` (res^3,) is False as empty for good."""
        self.allowed.copy_(allowed.reshape(-1))
        self.occupied &= self.allowed
        self._refresh_box()

    def cell_radius(self) -> float:
        """Radius of the sphere around a cell's centre that contains the cell."""
        return float(((self.bbox[1] - self.bbox[0]) / self.res).norm()) / 2

    @torch.no_grad()
    def cell_spheres(self, far: float = float("inf"), chunk: int = 1 << 20) -> tuple[torch.Tensor, torch.Tensor]:
        """World centres (res^3, 3) and radii (res^3,) of spheres holding each cell (of its part
        within `far` of the contraction centre, in units of the radius, for a contracted grid,
        whose outermost cells reach infinity)."""
        n, dev = self.res ** 3, self.opacity.device
        centres = torch.empty(n, 3, device=dev)
        radii = torch.empty(n, device=dev)
        corners = torch.tensor([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=torch.float32)
        limit = 2.0 - 1.0 / max(far, 1.0 + 1e-6)  # the contracted norm of distance `far`
        for s in range(0, n, chunk):
            idx = torch.arange(s, min(s + chunk, n), device=dev)
            c = self.cell_points(idx, torch.full((idx.shape[0], 3), 0.5, device=dev), world=False)
            r = torch.zeros(idx.shape[0], device=dev)
            world_c = self.from_grid(self._within(c, limit))
            for corner in corners.to(dev):
                y = self.cell_points(idx, corner.expand(idx.shape[0], 3), world=False)
                r = torch.maximum(r, (self.from_grid(self._within(y, limit)) - world_c).norm(dim=-1))
            centres[s:s + chunk], radii[s:s + chunk] = world_c, r
        return centres, radii

    def _within(self, y: torch.Tensor, limit: float) -> torch.Tensor:
        """Grid points scaled towards the centre to a contracted norm of at most `limit`."""
        if self.order is None:
            return y
        mag = y.abs().amax(-1, keepdim=True) if self.order == float("inf") else y.norm(dim=-1, keepdim=True)
        return y * (limit / mag.clamp_min(limit)).clamp_max(1.0)

    # ------------------------------------------------------------------ lookups
    def cell_index(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat cell index (m,) of world points (m, 3) and whether each lies inside the box."""
        lo, hi = self.bbox[0], self.bbox[1]
        u = (self.to_grid(points) - lo) / (hi - lo)
        inside = ((u >= 0) & (u <= 1)).all(-1)
        return self._flat_cell(u * self.res, self.res), inside

    def is_occupied(self, points: torch.Tensor) -> torch.Tensor:
        idx, inside = self.cell_index(points)
        return self.occupied[idx] & inside

    def cell_centres(self, idx: torch.Tensor) -> torch.Tensor:
        return self.cell_points(idx, torch.full((idx.shape[0], 3), 0.5, device=idx.device))

    def cell_points(self, idx: torch.Tensor, offsets: torch.Tensor, world: bool = True) -> torch.Tensor:
        """World points (or, world=False, the grid's own coordinates) at `offsets` (m, 3) in
        [0, 1) within cells `idx` (m,)."""
        r = self.res
        c = torch.stack([idx // (r * r), (idx // r) % r, idx % r], -1).float()
        lo, hi = self.bbox[0], self.bbox[1]
        y = lo + (c + offsets) / r * (hi - lo)
        return self.from_grid(y) if world else y

    # ------------------------------------------------------------------ refresh
    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], generator: torch.Generator | None,
               warmup: bool, n_cells: int = 0, chunk: int = 1 << 18) -> None:
        """Re-estimate the opacity of a set of cells from `density_fn` and re-threshold.

        warmup: all cells if `n_cells` is 0 or >= res^3, else `n_cells` random cells; after
        warm-up: n_cells / 2 random cells plus n_cells / 2 random occupied cells.
        """
        dev = self.opacity.device
        cells = self.allowed.nonzero(as_tuple=True)[0]  # only cells that may hold content
        total = cells.numel()
        if total == 0:
            return
        if warmup and (n_cells <= 0 or n_cells >= total):
            idx = cells
        elif warmup:
            idx = cells[torch.randint(0, total, (n_cells,), generator=generator, device=dev)]
        else:
            n = (n_cells if n_cells > 0 else total // 4) // 2
            uniform = cells[torch.randint(0, total, (n,), generator=generator, device=dev)]
            occ = self.occupied.nonzero(as_tuple=True)[0]
            pick = torch.randint(0, max(occ.numel(), 1), (n,), generator=generator, device=dev)
            idx = torch.cat([uniform, occ[pick]]) if occ.numel() else uniform
        offsets = torch.rand(idx.shape[0], 3, generator=generator, device=dev)
        pts = self.cell_points(idx, offsets)
        sigma = torch.cat([density_fn(pts[s:s + chunk]).float().reshape(-1) for s in range(0, pts.shape[0], chunk)])
        alpha = 1.0 - torch.exp(-sigma.clamp_min(0) * self.local_step(pts))
        # duplicates in idx: keep the largest new value per cell
        new = torch.zeros_like(self.opacity).scatter_reduce_(0, idx, alpha, reduce="amax", include_self=False)
        seen = torch.zeros_like(self.occupied).index_fill_(0, idx, True)
        # every visited cell decays at every refresh, sampled or not (Instant-NGP's rule): a cell
        # the field has emptied drops out within a few refreshes even when a refresh samples only
        # a small share of a large grid; a dense cell culled this way comes back when resampled
        old = self.opacity.clamp_min(0.0) * self.decay
        self.opacity.copy_(torch.where(seen, torch.maximum(old, new), torch.where(self.opacity >= 0, old, self.opacity)))
        visited = (self.opacity >= 0) & self.allowed
        thr = min(self.threshold, float(self.opacity[visited].mean())) if visited.any() else self.threshold
        self.occupied.copy_(((self.opacity > thr) | ~visited) & self.allowed)
        self._refresh_box()

    COARSE = 8  # fine cells per coarse cell along each axis

    def coarse_level(self) -> tuple[torch.Tensor, int]:
        """Coarse occupancy (rc^3,) and rc: a coarse cell (COARSE^3 fine cells) is marked when it
        or any of its 26 neighbours holds an occupied fine cell, so a stride that starts in an
        unmarked coarse cell and is no longer than a coarse cell's width never meets content."""
        if self._coarse is None or self._coarse[0].device != self.occupied.device:
            r = self.res
            occ = self.occupied.view(1, 1, r, r, r).float()
            coarse = F.max_pool3d(occ, self.COARSE, self.COARSE, ceil_mode=True)
            coarse = F.max_pool3d(coarse, 3, 1, padding=1)
            self._coarse = (coarse.reshape(-1) > 0, coarse.shape[-1])
        return self._coarse

    def _refresh_box(self) -> None:
        self._coarse = None
        occ = self.occupied.nonzero(as_tuple=True)[0]
        if occ.numel() == 0:
            self.occupied_box.copy_(self.bbox[0].expand(2, 3))  # empty: a degenerate box
            return
        r = self.res
        c = torch.stack([occ // (r * r), (occ // r) % r, occ % r], -1)
        lo, hi = self.bbox[0], self.bbox[1]
        size = (hi - lo) / r
        self.occupied_box[0] = lo + c.amin(0).float() * size
        self.occupied_box[1] = lo + (c.amax(0).float() + 1) * size

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def candidates(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                   offset: torch.Tensor, k_lo: int = 0, k_hi: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps that fall in occupied cells, packed: midpoints t (m,) and ray_idx (m,).

        Ray i is stepped at t = t_in + (k + offset_i) * step, k = 0, 1, ..., inside [near, far]
        clipped to the box around occupied cells; offset (n,) in [0, 1) (0.5 for rendering,
        random for training). With contraction, the steps are uniform in the warped distance
        (`to_s`) over [near, far] and t holds their distances. Only steps k_lo <= k < k_hi are
        returned (a window, see `march_field`)."""
        s_in, counts = self.ray_steps(origins, dirs, near, far, offset)
        if k_hi is not None:
            counts = counts.clamp_max(k_hi)
        listed = native_march.candidates(self, origins, dirs, s_in, counts, offset, k_lo)
        if listed is not None:  # on the CPU: one C pass per ray, the same steps
            return listed
        cells = self._step_cells(origins, dirs)
        stride = self._stride()
        n_strides = max(int(counts.max()) - k_lo + stride - 1, 0) // stride if counts.numel() else 0
        # every ray's strides side by side (n, n_strides): a broadcast, then only the kept ones
        k0 = k_lo + torch.arange(n_strides, device=origins.device) * stride
        maybe = k0[None, :] < counts[:, None]
        if stride > 1:  # drop the strides that start in a coarse cell with no content around
            coarse, rc = self.coarse_level()
            s0 = s_in[:, None] + (k0[None, :] + offset[:, None]) * self.step
            rays = torch.arange(origins.shape[0], device=origins.device)
            maybe &= _take(coarse, cells(s0, rays, self.COARSE, rc))
        ray_idx, j = maybe.nonzero(as_tuple=True)  # ray-major, strides in order
        # the steps of the kept strides (m', stride), tested one by one against the fine grid
        k = _take(k0, j)[:, None] + torch.arange(stride, device=origins.device)
        s = _take(s_in, ray_idx)[:, None] + (k.float() + _take(offset, ray_idx)[:, None]) * self.step
        # the steps lie inside the grid by construction (up to rounding, which the clamp absorbs)
        keep = (k < _take(counts, ray_idx)[:, None]) & _take(self.occupied, cells(s, ray_idx, 1, self.res))
        keep = keep.view(-1).nonzero()[:, 0]
        return self.to_t(_take(s.view(-1), keep)), _take(ray_idx, keep.div(stride, rounding_mode="floor"))

    def _step_cells(self, origins: torch.Tensor, dirs: torch.Tensor) -> Callable:
        """A function (s (m, k), rays (m,), width, res) -> the flat index (m, k) of the cell of a
        res^3 lattice of cells `width` fine cells wide that holds the step of ray rays[i] at (warped)
        distance s[i, j].

        The per-ray parts (the shift into the grid, its scale, with contraction the centre and the
        radius) are applied once per ray, and the per-step work runs on one (m, k) array per axis
        (structure of arrays): an elementwise operation broadcast over a last axis of three is about
        twice as slow on the CPU, and these are the most numerous operations of a render."""
        o_ax, d_ax, shift, scale = self.ray_axes(origins, dirs)
        shift = [torch.tensor(v, device=origins.device) for v in shift]

        def cells(s, rays, width, res):
            ro, rd = o_ax.index_select(1, rays), d_ax.index_select(1, rays)
            t = self.to_t(s) if self.contracted else s
            xs = [torch.addcmul(ro[a][:, None], rd[a][:, None], t) for a in range(3)]
            if self.contracted:  # contract(x) = x * (2 - 1/m) / m, m = max(norm(x), 1)
                if self.order == 2:
                    m = torch.sqrt(xs[0] * xs[0] + xs[1] * xs[1] + xs[2] * xs[2])
                else:
                    m = torch.maximum(torch.maximum(xs[0].abs(), xs[1].abs()), xs[2].abs())
                m = m.clamp_min_(1.0)
                f = (2.0 - m.reciprocal()).div_(m)
                xs = [torch.addcmul(shift[a], xs[a], f, value=scale[a]) for a in range(3)]
            if width != 1:
                xs = [x.div_(width) for x in xs]
            c = [x.clamp_(0, res - 1).floor_() for x in xs]
            if res ** 3 <= 1 << 24:  # exact in float32: fewer, cheaper operations than integers
                return c[0].mul_(res * res).add_(c[1], alpha=res).add_(c[2]).long()
            c = [x.long() for x in c]
            return (c[0] * res + c[1]) * res + c[2]
        return cells

    def ray_axes(self, origins: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list, list]:
        """Rays per axis (3, n) in the units the cell lookup works in, and the contracted grid's
        shift and scale (3 floats each) into cell units: a world grid's rays are in fine-cell units
        directly; a contracted grid's are relative to its centre in units of its radius, and a point
        y = contract(x) lies at cell y * scale + shift."""
        scale = self.res / (self.bbox[1] - self.bbox[0])
        if self.contracted:
            o_ax = ((origins - self.centre.to(origins.device)) / self.radius).T.contiguous()
            d_ax = (dirs / self.radius).T.contiguous()
        else:
            o_ax, d_ax = ((origins - self.bbox[0]) * scale).T.contiguous(), (dirs * scale).T.contiguous()
        return o_ax, d_ax, (-self.bbox[0] * scale).tolist(), scale.tolist()

    def ray_steps(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                  offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Where each ray's steps start (n,) (a distance, or a warped distance with contraction)
        and how many steps it has (n,) before its far end or the box around occupied cells."""
        if self.contracted:
            s_in = self.to_s(near.reshape(-1))
            end = self.to_s(far.reshape(-1))
        else:
            t_in, t_out = ray_box(origins, dirs, self.occupied_box[0], self.occupied_box[1])
            s_in, end = torch.maximum(t_in, near.reshape(-1)), torch.minimum(t_out, far.reshape(-1))
        return s_in, torch.ceil((end - s_in) / self.step - offset).clamp_min(0).long()

    def _stride(self) -> int:
        """Marching steps per coarse stride: as many as fit in a coarse cell's narrowest width.
        Contracted: a step spans at most step / radius of the grid's space inside the unit ball
        and, with steps growing past the knee, at most about four times that outside it (the
        contracted cells grow with the square of the distance, as the quadratic steps do)."""
        width = float(((self.bbox[1] - self.bbox[0]) / self.res).min()) * self.COARSE
        step = self.step if not self.contracted else 4.0 * self.step / self.radius
        return max(int(width / step * (1 - 1e-4)), 1)

    @staticmethod
    def _flat_cell(cell_pts: torch.Tensor, res: int) -> torch.Tensor:
        """Flat index (...) of the cells of a res^3 lattice holding points (..., 3) given in cell
        units (clamped into the lattice). In float32 while exact (res^3 <= 2^24): one clamp, one
        floor and one matrix product over the points instead of a chain of integer ops. Clamps
        and floors `cell_pts` in place: pass a temporary."""
        c = cell_pts.clamp_(0, res - 1).floor_()
        if res ** 3 <= 1 << 24:
            w = torch.tensor([res * res, res, 1], dtype=c.dtype, device=c.device)
            return (c @ w).long()
        c = c.long()
        return (c[..., 0] * res + c[..., 1]) * res + c[..., 2]

    @torch.no_grad()
    def march(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
              offset: torch.Tensor, density_fn: Callable[[torch.Tensor], torch.Tensor] | None,
              early_stop: float = 1e-4, alpha_min: float = 0.0, first_round: int = 8
              ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Samples that matter: midpoints t (m,), ray_idx (m,) and how many density evaluations
        it took. Each sample is the interval [t - step/2, t + step/2].

        With a `density_fn`, a step is kept when the ray's transmittance before it is above
        `early_stop` and its alpha is above `alpha_min`; rays stop once transmittance falls
        below `early_stop`. Density is evaluated in rounds: the first `first_round` occupied
        steps of every ray, then the next 2x as many for the rays still alive, and so on.
        """
        field_fn = None if density_fn is None else (lambda pts, _: density_fn(pts))
        t, ray_idx, evaluated, _, _ = self.march_field(origins, dirs, near, far, offset, field_fn,
                                                       early_stop, alpha_min, first_round)
        return t, ray_idx, evaluated

    @torch.no_grad()
    def march_field(self, origins: torch.Tensor, dirs: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                    offset: torch.Tensor, field_fn: Callable | None, early_stop: float = 1e-4,
                    alpha_min: float = 0.0, first_round: int = 8, payload_fn: Callable | None = None,
                    weight_min: float = 0.0, window: int = 0, window_max: int = 0):
        """`march` for a `field_fn` (points (m, 3), ray_idx (m,)) -> (density (m,), payload (m, k)
        or None) that also returns the payload (e.g. colour) of the kept samples, so a render
        without gradients evaluates the field once per sample: t, ray_idx, evaluated, density
        (m,) and payload (m, k) of the kept samples (None without a payload).

        With a `payload_fn` (field_fn's payload of the kept samples, their ray_idx) -> payload,
        the costly part of the payload (e.g. the colour head) runs on the kept samples only, and
        with weight_min > 0 only on those whose compositing weight (transmittance x alpha) exceeds
        weight_min: the others get a zero payload (black) but keep their density, so opacity and
        depth are unchanged and a pixel's colour moves by at most weight_min per such sample.

        The occupied steps are listed a window at a time, `window` steps per ray (0: WINDOW; rounded
        up to whole coarse strides), then twice as many for the rays still alive: a small window
        lists fewer steps behind the surfaces where rays stop, a large one makes fewer passes.
        window_max > 0 stops the doubling there (rounded up to whole strides): where most rays
        cross empty space before they reach content (a capture's far background), a doubled
        window would list hundreds of steps per ray behind the surface they stop at. The samples
        are the same."""
        if field_fn is None:
            t, ray_idx = self.candidates(origins, dirs, near, far, offset)
            return t, ray_idx, 0, None, None
        n, dev = origins.shape[0], origins.device
        acc_tau = torch.zeros(n, device=dev)
        alive = torch.ones(n, dtype=torch.bool, device=dev)
        ts, rays, sigmas, payloads = [], [], [], []
        stride = self._stride()  # whole strides per window: none listed and then cut off
        evaluated, k_lo, width = 0, 0, -(-(window or self.WINDOW) // stride) * stride
        widest = max(width, -(-window_max // stride) * stride) if window_max > 0 else None
        steps = self.ray_steps(origins, dirs, near, far, offset)[1]
        while True:  # windows of steps, each for the rays still alive: no candidates behind surfaces
            live = alive.nonzero()[:, 0] if k_lo else None
            if live is None:
                t, ray_idx = self.candidates(origins, dirs, near, far, offset, 0, width)
            else:
                t, ray_idx = self.candidates(_take(origins, live), _take(dirs, live), _take(near.reshape(-1), live),
                                             _take(far.reshape(-1), live), _take(offset, live), k_lo, k_lo + width)
                ray_idx = _take(live, ray_idx)
            if t.numel():
                evaluated += self._rounds(t, ray_idx, origins, dirs, field_fn, acc_tau, alive, early_stop, alpha_min,
                                          first_round, payload_fn, weight_min, ts, rays, sigmas, payloads)
            k_lo += width
            width = width * 2 if widest is None else min(width * 2, widest)
            if not bool(alive.any()) or k_lo >= int(steps[alive].max()):
                break
        if not ts:
            empty = torch.zeros(0, device=dev)
            return empty, torch.zeros(0, dtype=torch.long, device=dev), evaluated, empty, None
        ray_idx = torch.cat(rays)
        order = torch.sort(ray_idx, stable=True).indices  # ray-major; windows and steps front to back
        payload = _take(torch.cat(payloads), order) if payloads else None
        return (_take(torch.cat(ts), order), _take(ray_idx, order), evaluated, _take(torch.cat(sigmas), order),
                payload)

    WINDOW = 256  # the default first window of `march_field` (marching steps); later windows double

    def _rounds(self, t, ray_idx, origins, dirs, field_fn, acc_tau, alive, early_stop, alpha_min, first_round,
                payload_fn, weight_min, ts, rays, sigmas, payloads) -> int:
        """Density in rounds over one window's candidates (t, ray_idx, ray-major): the first
        `first_round` steps of every ray, then twice as many for the rays still alive, ...;
        appends the kept samples to the lists, updates acc_tau and alive in place, and returns
        how many densities it evaluated."""
        n = origins.shape[0]
        _, starts = segment_starts(ray_idx, n)
        k = torch.arange(t.shape[0], device=t.device) - _take(starts, ray_idx)
        rnd = torch.floor(torch.log2(k.float() / first_round + 1.0))  # round r: k in [K(2^r-1), K(2^(r+1)-1))
        evaluated = 0
        for r in range(int(rnd.max()) + 1):
            sel = (rnd == r).nonzero()[:, 0]  # this round's steps, ray-major
            sel = _take(sel, _take(alive, _take(ray_idx, sel)).nonzero()[:, 0])
            if sel.numel() == 0:
                break
            r_idx, t_sel = _take(ray_idx, sel), _take(t, sel)
            pts = torch.addcmul(_take(origins, r_idx), _take(dirs, r_idx), t_sel[:, None])
            out = field_fn(pts, r_idx)
            sigma, payload = out if isinstance(out, tuple) else (out, None)
            sigma = sigma.float().reshape(-1)
            evaluated += sel.numel()
            if self.knee > 0:
                t0, t1 = self.intervals(t_sel)
                delta = t1 - t0
            else:
                delta = self.step
            alpha = 1.0 - torch.exp(-sigma.clamp_min(0) * delta)
            tau = tau_from_alpha(alpha)
            _, round_starts = segment_starts(r_idx, n)
            before = _take(acc_tau, r_idx) + exclusive_segment_cumsum(tau, r_idx, round_starts)
            trans = torch.exp(-before)
            keep = ((trans > early_stop) & (alpha > alpha_min)).nonzero()[:, 0]
            ts.append(_take(t_sel, keep))
            rays.append(_take(r_idx, keep))
            sigmas.append(_take(sigma, keep))
            if payload is not None:
                lit = None  # compositing weights, needed only to skip the payload of faint samples
                if payload_fn is not None and weight_min > 0:
                    lit = _take(trans * alpha, keep) > weight_min
                payloads.append(self._payload(_take(payload, keep), _take(r_idx, keep), payload_fn, lit))
            acc_tau.index_add_(0, r_idx, tau)
            alive &= torch.exp(-acc_tau) > early_stop
        return evaluated

    @staticmethod
    def _payload(payload: torch.Tensor, r_idx: torch.Tensor, payload_fn: Callable | None,
                 lit: torch.Tensor | None) -> torch.Tensor:
        """payload_fn of the kept samples; with a mask `lit` only of those it marks (compositing
        weight above weight_min), the others get zeros (they still absorb, so nothing else changes)."""
        if payload_fn is None:
            return payload
        if lit is None:
            return payload_fn(payload, r_idx)
        lit = lit.nonzero()[:, 0]
        out = payload_fn(_take(payload, lit), _take(r_idx, lit))
        return out.new_zeros((payload.shape[0],) + out.shape[1:]).index_copy_(0, lit, out)


def _take(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x[idx] along the first axis for an index tensor of any shape: `index_select`, about twice
    as fast on CPU as advanced indexing, which these per-sample gathers are made of."""
    return x.index_select(0, idx.reshape(-1)).view(idx.shape + x.shape[1:])
