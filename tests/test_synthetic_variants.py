"""The built-in scene's variants (data.synthetic.gloss, metal, rods, grille, glass): exact geometry
and view-dependent colour, checked analytically."""
import math

import pytest
import torch

from nerf.config import load_config
from nerf.datasets import load_scene
from nerf.datasets import synthetic as syn
from nerf.datasets.options import DataOptions, SyntheticOptions
from nerf.errors import ConfigError


def _ray_at(point, direction):
    d = torch.nn.functional.normalize(torch.tensor([direction], dtype=torch.float32), dim=-1)
    return torch.tensor([point], dtype=torch.float32) - 3.0 * d, d


def test_metal_and_gloss_colour_moves_with_the_view_diffuse_does_not():
    """One point on the blue sphere seen from two directions: the plain (Lambertian) colour is the
    same, the metal's and the gloss's differ."""
    centre, radius = torch.tensor(syn.SPHERES[1][0]), syn.SPHERES[1][1]
    n = torch.nn.functional.normalize(torch.tensor([0.3, -0.5, 0.8]), dim=0)
    point = (centre + radius * n).tolist()
    mirror = 2 * float(n @ syn.LIGHT) * n - syn.LIGHT  # seen from here, the light's highlight peaks
    views = [(-mirror).tolist(), (-n).tolist()]
    colours = {}
    for name, so in (("plain", SyntheticOptions()), ("metal", SyntheticOptions(metal=True)),
                     ("gloss", SyntheticOptions(gloss=0.3, shininess=40))):
        cols = []
        for v in views:
            o, d = _ray_at(point, v)
            rgb, alpha, t = syn.shade_variant(o, d, None, so)
            assert alpha.item() == 1.0 and t.item() == pytest.approx(3.0, abs=1e-4)
            cols.append(rgb[0])
        colours[name] = cols
    assert torch.allclose(*colours["plain"], atol=1e-4)
    assert (colours["metal"][0] - colours["metal"][1]).abs().max() > 0.05
    assert (colours["gloss"][0] - colours["gloss"][1]).abs().max() > 0.02


def test_rods_are_opaque_tubes_of_the_stated_radius():
    so = SyntheticOptions(rods=4, rod_radius=0.02)
    ang = 2 * math.pi * 0.5 / 4
    axis = torch.tensor([syn.ROD_RING * math.cos(ang), syn.ROD_RING * math.sin(ang), 0.0])
    outward = torch.nn.functional.normalize(axis * torch.tensor([1.0, 1.0, 0.0]), dim=0)
    o = (axis + 3.0 * outward).unsqueeze(0)
    d = (-outward).unsqueeze(0)
    _, alpha, t = syn.shade_variant(o, d, None, so)
    assert alpha.item() == 1.0 and t.item() == pytest.approx(3.0 - 0.02, abs=1e-4)
    # just beside the rod, the ray misses it (and the rest of the scene lies behind, further away)
    side = torch.cross(outward, torch.tensor([0.0, 0.0, 1.0]), dim=0) * 0.021
    _, _, t_side = syn.shade_variant(o + side, d, None, so)
    assert t_side.item() > 3.0 + 0.02


def test_glass_is_composited_exactly_over_what_lies_behind():
    centre, radius, tint = syn.GLASS
    o = torch.tensor([[centre[0], centre[1] - 3.0, centre[2]]])
    d = torch.tensor([[0.0, 1.0, 0.0]])
    behind_rgb, behind_alpha, behind_t = syn.shade_variant(o, d, None, SyntheticOptions())
    rgb, alpha, t = syn.shade_variant(o, d, None, SyntheticOptions(glass=0.4))
    assert t.item() == pytest.approx(3.0 - radius, abs=1e-4) and behind_t.item() > t.item()
    assert alpha.item() == pytest.approx(0.4 + 0.6 * behind_alpha.item(), abs=1e-6)
    lit = syn.AMBIENT + (1 - syn.AMBIENT) * max(0.0, float(torch.tensor([0.0, -1.0, 0.0]) @ syn.LIGHT))
    expected = 0.4 * torch.tensor(tint) * lit + 0.6 * behind_rgb[0]
    assert torch.allclose(rgb[0], expected, atol=1e-5)


def test_grille_bars_alternate_black_and_white():
    so = SyntheticOptions(grille=True, grille_period=0.1)
    (cx, cy, cz), half, _ = syn.GRILLE_BOX
    xs = torch.tensor([0.025, 0.075, 0.125, 0.175])  # bar centres: white, black, white, black
    o = torch.stack([xs, torch.full_like(xs, cy + 3.0), torch.full_like(xs, cz)], -1)
    d = torch.tensor([[0.0, -1.0, 0.0]]).expand(4, 3)
    rgb, alpha, t = syn.shade_variant(o, d, None, so)
    assert (alpha == 1).all() and torch.allclose(t, torch.full_like(t, 3.0 - half[1]), atol=1e-4)
    lum = rgb.mean(-1)
    assert lum[0] > 5 * lum[1] and lum[2] > 5 * lum[3]


def test_variants_are_options_with_one_line_errors():
    cfg = load_config("builtin", ["data.synthetic.rods=6", "data.synthetic.metal=true", "data.synthetic.glass=0.3"])
    assert (cfg.data.synthetic.rods, cfg.data.synthetic.metal, cfg.data.synthetic.glass) == (6, True, 0.3)
    with pytest.raises(ConfigError, match="data.synthetic.glass: must be in"):
        load_config("builtin", ["data.synthetic.glass=1.5"])
    plain = load_scene(DataOptions(max_images=2, synthetic=SyntheticOptions(resolution=16)), "test")
    rods = load_scene(DataOptions(max_images=2, synthetic=SyntheticOptions(resolution=16, rods=8, rod_radius=0.05)),
                      "test")
    assert rods.alpha.sum() > plain.alpha.sum()  # the rods cover pixels the plain scene leaves empty


SHORT = ["data.synthetic.resolution=32", "data.synthetic.n_train=24", "data.synthetic.n_test=4",
         "train.max_steps=150", "train.max_minutes=0", "train.eval_every=0", "train.checkpoint_every=150",
         "model.fast.occ_warmup=64", "train.batch_rays=1024"]


_RUNS: dict[tuple[str, ...], tuple] = {}  # the seeded short runs already made, by their overrides


def _short_run(tmp_path, variant: list[str]):
    """A short seeded run on the variant, trained once per test process: the random-background
    test compares against the same runs the variants' floors check."""
    from conftest import DEVICE

    from nerf.inference.views import render_view, score_views
    from nerf.training.trainer import Trainer

    key = tuple(variant)
    if key not in _RUNS:
        cfg = load_config("builtin", SHORT + variant)
        tr = Trainer(cfg, tmp_path / "run", DEVICE, log=lambda *x: None, show_progress=False)
        tr.train()
        test = load_scene(cfg.data, "test")
        _RUNS[key] = tr, test, score_views(tr.model, test, tr.info, cfg.render.chunk)
    return (*_RUNS[key], render_view)


# floors of the PSNR on the 4 test views after the short run: each about 1.5 dB under what this
# CPU reached (the longer comparison with the plain scene is benchmarks/builtin_variants.py)
@pytest.mark.parametrize("variant,floor", [
    ([], 18.0),  # the plain scene
    (["data.synthetic.gloss=0.6"], 17.5),
    (["data.synthetic.metal=true"], 18.5),
    (["data.synthetic.grille=true"], 17.0),
    (["data.synthetic.glass=0.5"], 18.0),
], ids=["plain", "gloss", "metal", "grille", "glass"])
def test_a_short_run_learns_each_variant(tmp_path, variant, floor):
    _, _, res, _ = _short_run(tmp_path, variant)
    print(variant, f"{res['psnr']:.2f} dB")
    assert res["psnr"] > floor


def test_thin_rods_are_learned_opaque(tmp_path):
    """On the pixels only the rods cover (true alpha > 0.5 where the plain scene has none), the
    rendered opacity comes close to the true coverage: the rods are not see-through."""
    tr, test, res, render_view = _short_run(tmp_path, ["data.synthetic.rods=8", "data.synthetic.rod_radius=0.03"])
    plain = load_scene(load_config("builtin", SHORT).data, "test")
    rendered, truth = [], []
    for i in range(len(test)):
        only = (test.alpha[i] > 0.5) & (plain.alpha[i] < 0.5)
        if only.any():
            out = render_view(tr.model, test.cameras, i, tr.info, 4096)
            rendered.append(out["opacity"][only.to(tr.device)].cpu())
            truth.append(test.alpha[i][only])
    opacity, coverage = float(torch.cat(rendered).mean()), float(torch.cat(truth).mean())
    print(f"rods {res['psnr']:.2f} dB, opacity {opacity:.3f} against {coverage:.3f} true on "
          f"{sum(v.numel() for v in rendered)} rod pixels")
    assert sum(v.numel() for v in rendered) > 20 and coverage > 0.6
    assert opacity > 0.9 * coverage and res["psnr"] > 17.0
