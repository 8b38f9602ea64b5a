"""End to end on small captures written by the tests: train-scene (2 steps), eval-scene and
render-video on an LLFF folder (NDC, configs/llff.yaml picked by detection, spiral video), and
train-scene on COLMAP and transforms.json folders; fern trains for 2 steps when present.

One command runs as a subprocess (as a user would run it); the rest call the same entry points
in-process, which saves the interpreter start-up on a busy machine.
"""
import json

import numpy as np
import yaml
from conftest import run_cli
from test_captures import intrinsics_for, make_capture, write_colmap, write_transforms
from test_llff import forward_facing, write_llff

from nerf.commands import COMMANDS

TINY = ["model.depth=2", "model.width=32", "model.skip_layer=0", "model.view_width=16", "model.n_coarse=8",
        "model.n_fine=8", "model.pos_freqs=4", "model.dir_freqs=2", "train.batch_rays=64", "train.max_steps=2",
        "train.eval_every=0", "train.threads=1", "--quiet"]


def run_here(command, *args, capsys=None):
    """An entry point called in-process: (exit code, stderr)."""
    code = COMMANDS[command](list(args))
    return code, capsys.readouterr().err if capsys is not None else ""


def test_llff_train_eval_video(tmp_path):
    data = tmp_path / "scene"
    write_llff(data, forward_facing(), [2.0, 10.0], hw=(12, 16), full_hw=(96, 128), folder="images_8")
    run = tmp_path / "run"
    r = run_cli("train-scene", "--data", str(data), "--out", str(run), *TINY, timeout=120)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["data"]["downscale"] == 8 and cfg["data"]["ndc"] is True  # configs/llff.yaml
    scene = json.loads((run / "scene.json").read_text())
    assert scene["info"]["ndc"] is True and scene["render_path"] == "spiral"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_views"] == 2 and np.isfinite(metrics["psnr"])  # views 0 and 8 held out
    assert run_here("eval-scene", str(run), "--quiet") == (0, "")
    assert run_here("render-video", str(run), "--frames", "3", "--quiet") == (0, "")
    assert (run / "videos" / "rgb.mp4").stat().st_size > 0


def test_llff_missing_images_folder_is_one_line(tmp_path, capsys):
    data = tmp_path / "scene"
    write_llff(data, forward_facing(), [2.0, 10.0], folder="images_4")
    code, err = run_here("train-scene", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, capsys=capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "images_8" in err and "images_4" in err
    assert not (tmp_path / "run").exists()


def test_colmap_and_transforms_train(tmp_path, capsys):
    views, points = make_capture()
    cams = [("OPENCV", intrinsics_for("OPENCV")[0])]
    write_colmap(tmp_path / "colmap", views, points, cams, "bin")
    write_transforms(tmp_path / "ngp", views, cams)
    for name, max_side, width in (("colmap", 10, 10), ("ngp", 0, 20)):  # the images are 20x16
        run = tmp_path / f"run_{name}"
        assert run_here("train-scene", "--data", str(tmp_path / name), "--out", str(run), *TINY,
                        "model.fast.dense_res=16", "model.fast.grid_res=16", f"data.max_side={max_side}",
                        "data.downscale=1", capsys=capsys) == (0, "")
        scene = json.loads((run / "scene.json").read_text())
        info = scene["info"]
        assert info["ndc"] is False and info["background"] is None and info["near"] < info["far"]
        assert scene["intrinsics"]["width"] == width  # data.max_side=10 reads them at half size


def test_unknown_folder_names_what_was_looked_for(tmp_path, capsys):
    code, err = run_here("train-scene", "--data", str(tmp_path), "--out", str(tmp_path / "run"), capsys=capsys)
    assert code == 2
    assert "poses_bounds.npy (llff)" in err and "transforms.json (transforms)" in err and "cameras.bin" in err


def test_fern_trains_in_ndc(fern_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_here("train-scene", "--data", str(fern_dir), "--out", str(run), "--no-eval", *TINY,
                    capsys=capsys) == (0, "")
    scene = json.loads((run / "scene.json").read_text())
    assert scene["info"]["ndc"] is True and len(scene["train_c2w"]) == 17
