"""Packed compositing (render/packed.py) equals dense compositing (render/composite.py)."""
import torch

from nerf.render.composite import composite
from nerf.render.packed import composite_packed, distortion_loss, exclusive_segment_cumsum, pack_dense, segment_starts
from nerf.render.samplers import stratified_edges


def _dense_and_packed(n_rays=37, n=24, seed=0, background=True):
    g = torch.Generator().manual_seed(seed)
    near, far = torch.full((n_rays, 1), 2.0), torch.full((n_rays, 1), 6.0)
    edges = stratified_edges(near, far, n, jitter=True, generator=g)
    sigma = torch.rand(n_rays, n, generator=g) * 8.0
    sigma[:, n // 2] = 1e4  # a near-opaque sample exercises the alpha clamp
    rgb = torch.rand(n_rays, n, 3, generator=g)
    keep = torch.rand(n_rays, n, generator=g) < 0.6
    keep[0] = False  # rays with no samples at all
    keep[5] = False
    keep[1] = True
    bg = torch.tensor([1.0, 1.0, 1.0]) if background else None
    # dense: dropped samples carry zero density (they contribute nothing)
    dense = composite(torch.where(keep, sigma, torch.zeros_like(sigma)), rgb, edges, bg)
    t0, t1, ray_idx = pack_dense(edges, keep)
    packed = composite_packed(sigma[keep], rgb[keep], t0, t1, ray_idx, n_rays, bg, edges[:, -1:])  # dense: far = last edge
    return dense, packed, keep


def test_packed_equals_dense_including_empty_rays():
    for bg in (True, False):
        dense, packed, keep = _dense_and_packed(background=bg)
        for k in ("rgb", "opacity", "depth", "expected_depth"):
            assert packed[k].shape == dense[k].shape
            assert torch.allclose(packed[k], dense[k], atol=1e-5), (k, (packed[k] - dense[k]).abs().max())
        assert torch.allclose(packed["weights"], dense["weights"][keep], atol=1e-5)
        # the empty rays: nothing seen, background colour, depth = far
        assert float(packed["opacity"][0]) == 0.0 and float(packed["depth"][0]) == float(dense["depth"][0])
        if bg:
            assert torch.allclose(packed["rgb"][0], torch.ones(3))


def test_packed_gradients_equal_dense():
    g = torch.Generator().manual_seed(3)
    n_rays, n = 9, 16
    edges = stratified_edges(torch.full((n_rays, 1), 2.0), torch.full((n_rays, 1), 6.0), n, True, generator=g)
    sigma = (torch.rand(n_rays, n, generator=g) * 3).requires_grad_()
    rgb = torch.rand(n_rays, n, 3, generator=g).requires_grad_()
    w = torch.rand(n_rays, 3, generator=g)
    (composite(sigma, rgb, edges, None)["rgb"] * w).sum().backward()
    gs, gc = sigma.grad.clone(), rgb.grad.clone()
    sigma.grad = rgb.grad = None
    t0, t1, ray_idx = pack_dense(edges, torch.ones(n_rays, n, dtype=torch.bool))
    out = composite_packed(sigma.reshape(-1), rgb.reshape(-1, 3), t0, t1, ray_idx, n_rays, None, 6.0)
    (out["rgb"] * w).sum().backward()
    assert torch.allclose(sigma.grad, gs, atol=1e-5) and torch.allclose(rgb.grad, gc, atol=1e-5)


def test_segment_cumsum_restarts_per_ray():
    ray_idx = torch.tensor([0, 0, 0, 2, 2, 3])
    v = torch.tensor([1.0, 2.0, 3.0, 10.0, 20.0, 5.0])
    counts, starts = segment_starts(ray_idx, 5)
    assert counts.tolist() == [3, 0, 2, 1, 0]
    assert exclusive_segment_cumsum(v, ray_idx, starts).tolist() == [0.0, 1.0, 3.0, 0.0, 10.0, 0.0]


def test_no_samples_at_all():
    out = composite_packed(torch.zeros(0), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0),
                           torch.zeros(0, dtype=torch.long), 4, torch.ones(3), 6.0)
    assert torch.equal(out["rgb"], torch.ones(4, 3)) and torch.equal(out["opacity"], torch.zeros(4, 1))
    assert torch.equal(out["depth"], torch.full((4, 1), 6.0))


def test_distortion_loss_matches_the_double_sum():
    """The O(m) packed form equals the definition's double sum, ray by ray (rays without samples: 0),
    and it is larger for weight spread along a ray than for the same weight on one interval."""
    gen = torch.Generator().manual_seed(0)
    counts = torch.tensor([3, 0, 7, 1, 12])
    ray_idx = torch.repeat_interleave(torch.arange(5), counts)
    m = ray_idx.numel()
    edges = [torch.sort(torch.rand(c + 1, generator=gen)).values for c in counts.tolist()]
    t0 = torch.cat([e[:-1] for e in edges])
    t1 = torch.cat([e[1:] for e in edges])
    w = torch.rand(m, generator=gen) * 0.3
    got = distortion_loss(w, t0, t1, ray_idx, 5)
    for r in range(5):
        sel = ray_idx == r
        wi, mi, di = w[sel], 0.5 * (t0[sel] + t1[sel]), t1[sel] - t0[sel]
        ref = (wi[:, None] * wi[None, :] * (mi[:, None] - mi[None, :]).abs()).sum() + (wi.square() * di).sum() / 3
        assert abs(float(got[r]) - float(ref)) < 1e-6, r
    assert got[1] == 0
    # one ray, total weight 1: on a single interval of length 0.01 vs spread over [0, 1]
    ts = torch.linspace(0, 1, 101)
    spread = distortion_loss(torch.full((100,), 0.01), ts[:-1], ts[1:], torch.zeros(100, dtype=torch.long), 1)
    tight = distortion_loss(torch.ones(1), ts[50:51], ts[51:52], torch.zeros(1, dtype=torch.long), 1)
    assert abs(float(tight) - 0.01 / 3) < 1e-7 and abs(float(spread) - 1 / 3) < 1e-3
