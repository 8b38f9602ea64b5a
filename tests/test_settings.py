"""The one settings system: includes (`base:`), aliases of old spellings, one-line errors, and the
same machinery for fit-image and meta-train."""
import pytest

from nerf.config import load_config
from nerf.errors import ConfigError
from nerf.inr.fit_image import SCHEMA as FIT_SCHEMA
from nerf.inr.reptile import load_meta_config
from nerf.settings import load_settings


def test_a_config_includes_its_base_and_overrides_some_keys(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  lr: 0.003\n  max_steps: 40\nmodel:\n  nerf:\n    width: 32\n")
    (tmp_path / "child.yaml").write_text("base: base.yaml\ntrain:\n  max_steps: 7\n")
    cfg = load_config(str(tmp_path / "child.yaml"), ["model.nerf.depth=3"])
    assert (cfg.train.lr, cfg.train.max_steps, cfg.model.nerf.width, cfg.model.nerf.depth) == (0.003, 7, 32, 3)
    # a name in configs/ works as a base too: blender_quarter is blender_nerf at downscale 4
    q, full = load_config("blender_quarter"), load_config("blender_nerf")
    assert q.data.downscale == 4 and q.model == full.model and q.train == full.train


@pytest.mark.parametrize("text,needle", [
    ("base: nowhere.yaml\n", "base config 'nowhere.yaml' not found"),
    ("base: [1]\n", "'base' must name a config file"),
    ("base: loop.yaml\n", "includes itself"),
])
def test_bad_includes_are_one_line_errors(tmp_path, text, needle):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "loop.yaml"))
    assert needle in str(err.value) and "\n" not in str(err.value) and "loop.yaml" in str(err.value)


def test_old_flat_spelling_of_the_paper_model_is_read():
    old = load_config(None, base={"model": {"method": "nerf", "n_coarse": 16, "width": 48}})
    assert (old.model.nerf.n_coarse, old.model.nerf.width) == (16, 48)
    with pytest.raises(ConfigError, match="did you mean 'model.nerf.n_fine'"):
        load_config(None, ["model.nerf.n_fin=3"])


def test_fit_image_and_meta_train_use_the_same_settings(tmp_path):
    (tmp_path / "fit.yaml").write_text("steps: 50\nwidth: 32\n")
    s = load_settings(FIT_SCHEMA, str(tmp_path / "fit.yaml"), ["sigma=3"])
    assert (s.steps, s.width, s.sigma) == (50, 32, 3.0)
    with pytest.raises(ConfigError, match="unknown config key 'widht' \\(did you mean 'width'\\?\\)"):
        load_settings(FIT_SCHEMA, None, ["widht=3"])
    with pytest.raises(ConfigError, match="steps: must be >= 1"):
        load_settings(FIT_SCHEMA, None, ["steps=0"])
    cfg = load_meta_config("meta_builtin", ["meta.inner_steps=4", "meta.anneal=false"])
    assert cfg.meta.inner_steps == 4 and cfg.meta.anneal is False and cfg.model.nerf.width == 64
    with pytest.raises(ConfigError, match="meta.outer_lr: must be in"):
        load_meta_config("meta_builtin", ["meta.outer_lr=2"])
