"""fit-image: image regression with coordinate networks (held-out pixels, renders, comparison)."""
from __future__ import annotations

import json
import math

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import run_cli

from nerf.errors import UserError
from nerf.inr.fit_image import FitSettings, ImageINR, fit_one, load_image, pixel_coords, train_mask


def stripes(h: int = 48, w: int = 48) -> torch.Tensor:
    """A small test image with detail a plain MLP blurs: stripes of 8-10 pixel periods on a gradient
    (well below the training grid's Nyquist period of 4 pixels, so the held-out pixels are predictable)."""
    y, x = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    r = 0.5 + 0.35 * torch.sin(2 * math.pi * x / 8.0) + 0.1 * (y / h - 0.5)
    g = 0.5 + 0.35 * torch.sin(2 * math.pi * y / 10.0 + 1.0)
    b = 0.5 + 0.3 * torch.sin(2 * math.pi * (x + y) / 9.0) * (x / w)
    return torch.stack([r, g, b], -1).clamp(0, 1)


def save(path, img: torch.Tensor):
    iio.imwrite(path, (img.numpy() * 255 + 0.5).astype(np.uint8))
    return path


def test_protocol_trains_on_every_other_pixel():
    m = train_mask(6, 5)
    assert m.sum() == 3 * 3
    assert m[0, 0] and m[2, 4] and not m[1, 0] and not m[0, 1]
    c = pixel_coords(4, 8)
    assert c.shape == (4, 8, 2)
    assert c[0, 0].tolist() == pytest.approx([-7 / 8, -3 / 8])  # the longer side spans [-1, 1]
    c2 = pixel_coords(4, 8, scale=2)
    assert c2.shape == (8, 16, 2) and c2[0, 0].tolist() == pytest.approx([-15 / 16, -7 / 16])


def test_gaussian_features_beat_no_encoding_on_held_out_pixels():
    img = stripes()
    s = FitSettings(steps=300, width=64, depth=3, features=64, sigma=1.0, eval_every=300)
    quiet = lambda *a: None  # noqa: E731
    gauss = fit_one(img, "gaussian", s, log=quiet)
    plain = fit_one(img, "none", s, log=quiet)
    # measured 30.1 dB and 15.2 dB (one thread)
    assert gauss["psnr"] > 27.0
    assert plain["psnr"] < 18.0
    assert gauss["psnr"] - plain["psnr"] > 10.0
    assert gauss["curve"][-1] == [300, pytest.approx(gauss["psnr"], abs=1e-6)]


def test_image_inr_shapes_and_ranges():
    s = FitSettings(width=16, depth=2, features=8)
    xy = torch.rand(10, 2) * 2 - 1
    for enc in ("none", "positional", "gaussian", "siren"):
        out = ImageINR(enc, s)(xy)
        assert out.shape == (10, 3)
    with pytest.raises(UserError, match="--encoding"):
        ImageINR("hash", s)


def test_load_image_composites_alpha_over_white_and_downscales(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, :] = [255, 0, 0, 255]  # top half opaque red, bottom half transparent
    iio.imwrite(tmp_path / "a.png", rgba)
    img = load_image(tmp_path / "a.png", downscale=2)
    assert img.shape == (4, 4, 3)
    torch.testing.assert_close(img[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(img[3, 0], torch.tensor([1.0, 1.0, 1.0]))


def test_cli_all_compares_every_encoding(tmp_path):
    image = save(tmp_path / "stripes.png", stripes(24, 20))
    out = tmp_path / "fit"
    r = run_cli("fit-image", str(image), "--encoding", "all", "--out", str(out), "--steps", "40",
                "--width", "32", "--features", "32", "--threads", "1", "--eval-every", "20", timeout=300)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["none", "positional", "gaussian", "siren"]
    for name, m in metrics.items():
        assert 5.0 < m["psnr"] < 60.0 and m["steps"] == 40
        assert (out / name / "render_1x.png").is_file()
        assert iio.imread(out / name / "render_2x.png").shape == (48, 40, 3)
        assert iio.imread(out / name / "render_4x.png").shape == (96, 80, 3)
        assert list((out / name).glob("events.out.tfevents.*"))
    assert (out / "comparison.png").is_file()
    table = (out / "table.md").read_text()
    assert all(f"| {name} |" in table for name in metrics)
    assert "| gaussian |" in r.stdout


def test_cli_bad_input_is_one_line(tmp_path):
    r = run_cli("fit-image", str(tmp_path / "missing.png"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "missing.png" in r.stderr
    image = save(tmp_path / "s.png", stripes(8, 8))
    r = run_cli("fit-image", str(image), "--steps", "0", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "steps: must be >= 1" in r.stderr
    r = run_cli("fit-image", str(image), "--encoding", "hash")
    assert r.returncode == 2 and "--encoding" in r.stderr
    (tmp_path / "bad.png").write_bytes(b"not an image")
    r = run_cli("fit-image", str(tmp_path / "bad.png"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "bad.png" in r.stderr and r.stderr.strip().count("\n") == 0
