"""train.random_background: training rays of images with alpha are composited over a random colour
each, and so are their target pixels, exactly."""
import torch
from test_synthetic_variants import _short_run  # the variants' short run on the built-in scene

from nerf.config import load_config
from nerf.training.batches import over_random_background
from nerf.training.trainer import Trainer

FAST = ["data.synthetic.resolution=24", "data.synthetic.n_train=6", "data.synthetic.n_test=1",
        "train.batch_rays=512", "train.max_steps=2", "train.eval_every=0", "train.checkpoint_every=100",
        "train.precision=fp32"]


def test_a_target_is_recomposited_exactly_over_its_new_colour():
    g = torch.Generator().manual_seed(0)
    alpha = torch.rand(1000)
    alpha[:100], alpha[100:200] = 0.0, 1.0
    premultiplied = torch.rand(1000, 3) * alpha[:, None]  # colour times alpha: nothing where alpha is 0
    white = torch.ones(3)
    target, colours = over_random_background(premultiplied + (1 - alpha)[:, None] * white, alpha, white, g)
    assert torch.allclose(target, premultiplied + (1 - alpha)[:, None] * colours, atol=1e-6)
    assert torch.allclose(target[:100], colours[:100], atol=1e-6)  # background pixels: the new colour itself
    assert torch.allclose(target[100:200], premultiplied[100:200], atol=1e-6)  # opaque pixels: unchanged
    assert 0 <= float(colours.min()) and float(colours.max()) <= 1 and float(colours.std()) > 0.25


def _first_batch(tmp_path, overrides):
    """The rays and targets of a run's first training step."""
    cfg = load_config("builtin", FAST + overrides)
    tr = Trainer(cfg, tmp_path / "run", torch.device("cpu"), show_progress=False, log=lambda *a: None)
    seen = {}
    forward, loss = tr.model.forward, tr.model.loss

    def record_forward(rays, *a, **k):
        seen.setdefault("rays", rays)
        return forward(rays, *a, **k)

    def record_loss(out, target):
        seen.setdefault("target", target)
        seen.setdefault("rgb", out["rgb"].detach())
        seen.setdefault("opacity", out["opacity"].detach())
        return loss(out, target)

    tr.model.forward, tr.model.loss = record_forward, record_loss
    tr.train_step()
    return tr, seen


def test_training_rays_and_targets_share_the_random_colour(tmp_path):
    """The built-in scene's default (builtin.yaml), as blender.yaml's for Blender scenes."""
    assert load_config("blender", []).train.random_background
    tr, seen = _first_batch(tmp_path, [])
    rays, target = seen["rays"], seen["target"]
    assert rays.background is not None and rays.background.shape == (len(rays), 3)
    # the pixels the scene's alpha leaves empty: their target is the ray's own colour, not white
    empty = (target - rays.background).abs().amax(-1) < 1e-6
    assert 0.2 < float(empty.float().mean()) < 0.95
    assert float(rays.background.std()) > 0.25
    # the model composites each ray over the same colour: what is left once it is taken off is a
    # premultiplied colour, between 0 and the ray's opacity
    rgb, opacity = seen["rgb"], seen["opacity"]
    assert float(opacity.min()) < 0.9  # some rays' backgrounds show
    premultiplied = rgb - (1 - opacity) * rays.background
    assert float(premultiplied.min()) > -1e-5 and float((premultiplied - opacity).max()) < 1e-5


def test_fixed_background_and_images_without_alpha_are_left_alone(tmp_path):
    _, seen = _first_batch(tmp_path / "fixed", ["train.random_background=false"])
    assert seen["rays"].background is None
    _, seen = _first_batch(tmp_path / "sky", ["train.random_background=true", "data.synthetic.unbounded=true"])
    assert seen["rays"].background is None


def test_a_random_background_keeps_bright_surfaces_opaque(tmp_path):
    """The built-in scene's bright yellow and cream surfaces, and the gloss variant's white
    highlights, lie near its white background colour: over a fixed white they can be learned
    part see-through at little cost, and the depth is then off. Over a random colour per ray they
    cannot: the depth against the exact truth and the PSNR are clearly better."""
    assert load_config("builtin", []).train.random_background  # the variants' runs below use it
    for variant in ([], ["data.synthetic.gloss=0.6"]):
        fixed = _short_run(tmp_path / f"fixed{len(variant)}", variant + ["train.random_background=false"])[2]
        random = _short_run(tmp_path / f"random{len(variant)}", variant)[2]  # the same runs as the variants' test
        fixed, random = (fixed["depth_mae"], fixed["psnr"]), (random["depth_mae"], random["psnr"])
        print(variant, f"depth error {fixed[0]:.4f} fixed, {random[0]:.4f} random; "
              f"PSNR {fixed[1]:.2f} / {random[1]:.2f}")
        assert random[0] < 0.8 * fixed[0]
        assert random[1] > fixed[1] + 0.5
