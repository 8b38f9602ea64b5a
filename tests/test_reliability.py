"""Bad input from the command line, interruption (SIGINT, SIGKILL, truncated checkpoints) and
numerical faults during training."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from conftest import DEVICE, ROOT, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nerf.training.trainer as trainer_mod
from nerf.commands.train import main as train_scene_main
from nerf.config import load_config
from nerf.datasets import DatasetError, load_scene
from nerf.datasets.options import DataOptions
from nerf.runs.checkpoints import list_checkpoints
from nerf.training.trainer import Trainer

TINY = [
    "model.method=nerf", "data.synthetic.resolution=16", "data.synthetic.n_train=6", "data.synthetic.n_test=2",
    "model.depth=2", "model.width=32", "model.view_width=16", "model.skip_layer=0",
    "model.n_coarse=8", "model.n_fine=8", "model.pos_freqs=4", "model.dir_freqs=2",
    "train.batch_rays=64", "train.eval_every=0", "train.log_every=1",
]


def _blender(tmp_path, n=3, size=8, angle=0.7):
    """A tiny valid Blender-format folder; returns its path and the train JSON's dict."""
    root = tmp_path / "scene"
    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(n):
            img = (np.random.default_rng(i).random((size, size, 4)) * 255).astype(np.uint8)
            iio.imwrite(root / split / f"r_{i}.png", img)
            pose = np.eye(4)
            pose[2, 3] = 4.0
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": pose.tolist()})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return root


def _train_cli(capsys, *args):
    code = train_scene_main(list(args))
    return code, capsys.readouterr().err.strip()


def _edit(root, split, fn):
    path = root / f"transforms_{split}.json"
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _bad_pose(value):
    def fn(meta):
        meta["frames"][1]["transform_matrix"][0][0] = value
    return fn


@pytest.mark.parametrize("breakage,needle", [
    ("missing_split", "transforms_val.json: file not found"),
    ("malformed_json", "transforms_train.json: malformed JSON"),
    ("missing_image", "r_1.png: image file not found"),
    ("unreadable_image", "r_1.png: cannot read image"),
    ("size_mismatch", "r_2.png: image size 6x6 differs from the split's 8x8"),
    ("nan_pose", "pose 1 has non-finite values"),
    ("shear_pose", "pose 1 is not a rigid transform"),
    ("bad_focal", "'camera_angle_x' must be a number in (0, pi)"),
    ("no_frames", "'frames' must be a non-empty list"),
])
def test_bad_dataset_gets_one_line_exit_2(tmp_path, capsys, breakage, needle):
    root = _blender(tmp_path)
    if breakage == "missing_split":
        (root / "transforms_val.json").unlink()  # the trainer reads val for its TensorBoard view
    elif breakage == "malformed_json":
        (root / "transforms_train.json").write_text('{"camera_angle_x": 0.7, "frames": [')
    elif breakage == "missing_image":
        (root / "train" / "r_1.png").unlink()
    elif breakage == "unreadable_image":
        (root / "train" / "r_1.png").write_bytes(b"not a png at all")
    elif breakage == "size_mismatch":
        iio.imwrite(root / "train" / "r_2.png", np.zeros((6, 6, 4), np.uint8))
    elif breakage == "nan_pose":
        _edit(root, "train", _bad_pose(float("nan")))
    elif breakage == "shear_pose":
        _edit(root, "train", _bad_pose(1.7))
    elif breakage == "bad_focal":
        _edit(root, "train", lambda m: m.__setitem__("camera_angle_x", -1))
    elif breakage == "no_frames":
        _edit(root, "train", lambda m: m.__setitem__("frames", []))
    out = tmp_path / "run"
    code, err = _train_cli(capsys, "--data", str(root), "--out", str(out), "--quiet", *TINY)
    assert code == 2
    assert needle in err, err
    assert len(err.splitlines()) == 1 and err.startswith("train-scene: error: ")
    assert not out.exists()


def test_override_wrong_type_and_range(tmp_path, capsys):
    for arg, needle in [("train.batch_rays=many", "'train.batch_rays' must be int"),
                        ("data.downscale=0", "data.downscale: must be >= 1"),
                        ("train.lr_decay_factor=2", "train.lr_decay_factor: must be in (0, 1]"),
                        ("train.lr_decay_over=hours", "train.lr_decay_over: must be steps or minutes"),
                        ("model.method=magic", "model.method: unknown method 'magic'"),
                        ("model.fast.prune_min_share=2", "model.fast.prune_min_share: must be in [0, 1], got 2.0")]:
        code, err = _train_cli(capsys, "--out", str(tmp_path / "r"), "--quiet", arg)
        assert code == 2 and needle in err and len(err.splitlines()) == 1, err


def test_incompatible_checkpoint_and_existing_run(tmp_path, capsys):
    run = tmp_path / "run"
    code, _ = _train_cli(capsys, "--out", str(run), "--quiet", "--no-eval", *TINY, "train.max_steps=2")
    assert code == 0
    code, err = _train_cli(capsys, "--out", str(run), "--quiet", *TINY, "train.max_steps=2")
    assert code == 2 and "already holds a run; pass --resume" in err
    code, err = _train_cli(capsys, "--out", str(run), "--resume", "--quiet", "model.width=48", "train.max_steps=4")
    assert code == 2 and "step_0000002.pt: checkpoint was trained with a different model config (model.nerf.width)" in err
    code, err = _train_cli(capsys, "--out", str(run), "--overwrite", "--quiet", "--no-eval", *TINY,
                           "model.width=48", "train.max_steps=1")
    assert code == 0 and [p.name for p in list_checkpoints(run)] == ["step_0000001.pt"]
    # eval-scene with a config edited after training
    cfg_text = (run / "config.yaml").read_text().replace("width: 48", "width: 40")
    (run / "config.yaml").write_text(cfg_text)
    proc = run_cli("eval-scene", str(run))
    assert proc.returncode == 2 and "checkpoint does not match the run's config" in proc.stderr


def test_truncated_checkpoint_is_skipped_on_resume(tmp_path):
    cfg = load_config("builtin_nerf", TINY + ["train.max_steps=4", "train.checkpoint_every=2"])
    Trainer(cfg, tmp_path / "r", DEVICE, show_progress=False, log=lambda *a: None).train()
    newest = list_checkpoints(tmp_path / "r")[-1]
    assert newest.name == "step_0000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step_0000004.pt: skipping unreadable checkpoint"):
        resumed = Trainer(cfg, tmp_path / "r", DEVICE, resume=True, show_progress=False,
                          log=lambda *a: None)
    assert resumed.step == 2


def _nan_batches(monkeypatch, bad_steps: set[int]):
    real = trainer_mod.sample_batch
    calls = {"n": 0}

    def fake(*args, **kwargs):
        cam, x, y, target = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] in bad_steps:
            target = target.clone()
            target[0, 0] = float("nan")
        return cam, x, y, target

    monkeypatch.setattr(trainer_mod, "sample_batch", fake)


def test_nan_batch_is_skipped_counted_and_training_recovers(tmp_path, monkeypatch):
    cfg = load_config("builtin_nerf", TINY + ["train.max_steps=60", "train.lr=0.005"])
    clean = Trainer(cfg, tmp_path / "clean", DEVICE, show_progress=False, log=lambda *a: None)
    clean.train()
    _nan_batches(monkeypatch, {5})
    faulty = Trainer(cfg, tmp_path / "faulty", DEVICE, show_progress=False, log=lambda *a: None)
    faulty.train()
    assert faulty.skipped_steps == 1 and faulty.step == 60
    assert all(torch.isfinite(p).all() for p in faulty.model.parameters())
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(tmp_path / "faulty"))
    ea.Reload()
    assert ea.Scalars("train/skipped_steps")[-1].value == 1
    # same final quality on the training views as the clean run
    monkeypatch.undo()
    from nerf.inference.views import score_views

    train_views = load_scene(cfg.data, "train")
    a = score_views(clean.model, train_views, clean.info, 4096)["psnr"]
    b = score_views(faulty.model, train_views, faulty.info, 4096)["psnr"]
    assert abs(a - b) < 0.5, (a, b)


def test_repeated_faults_roll_back_with_lower_lr(tmp_path, monkeypatch):
    cfg = load_config("builtin_nerf", TINY + ["train.max_steps=12", "train.checkpoint_every=3", "train.max_bad_steps=4"])
    _nan_batches(monkeypatch, {7, 8, 9, 10})
    logs = []
    tr = Trainer(cfg, tmp_path / "r", DEVICE, show_progress=False, log=logs.append)
    tr.train()
    assert tr.rollbacks == 1 and tr.lr_scale == 0.5 and tr.skipped_steps == 4
    assert any("rolled back (step_0000006.pt)" in m for m in logs)


def test_collapsed_field_is_reported(tmp_path, monkeypatch):
    cfg = load_config("builtin_nerf", TINY + ["train.max_steps=3", "train.collapse_check_after=1"])
    tr = Trainer(cfg, tmp_path / "r", DEVICE, show_progress=False, log=lambda *a: None)
    advice = tr.check_collapse({"opacity_mean": 0.001, "opacity_std": 0.0001})
    assert tr.step == 0 and advice is None  # before the check starts
    tr.step = 5
    advice = tr.check_collapse({"opacity_mean": 0.001, "opacity_std": 0.0001})
    assert "collapsed to empty space" in advice and "train.lr" in advice
    assert tr.check_collapse({"opacity_mean": 0.001, "opacity_std": 0.0001}) is None  # reported once
    tr.collapse_reported = False
    assert tr.check_collapse({"opacity_mean": 0.3, "opacity_std": 0.4}) is None  # a healthy field


def _spawn_train(run, extra=()):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    args = [sys.executable, "-m", "nerf", "train-scene", "--out", str(run), "--quiet", "--no-eval", *TINY,
            "train.max_steps=40", "train.checkpoint_every=2", *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(run, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        if list_checkpoints(run):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_sigint_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    run = tmp_path / "r"
    proc = _spawn_train(run, ["train.max_steps=100000"])
    assert _wait_for_checkpoint(run)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "--resume" in err and "Traceback" not in err
    step = int(list_checkpoints(run)[-1].stem.split("_")[1])
    assert step % 2 == 1 or step >= 2  # the step it stopped at, not only the periodic ones
    state = torch.load(list_checkpoints(run)[-1], weights_only=False)
    assert state["step"] == step


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_equals_straight_run(tmp_path):
    straight = tmp_path / "straight"
    p = _spawn_train(straight)
    p.communicate(timeout=300)
    assert p.returncode == 0
    run = tmp_path / "killed"
    rng = random.Random(1234)
    kills = 0
    for _ in range(3):
        p = _spawn_train(run, ["--resume"] if run.exists() else [])
        if not _wait_for_checkpoint(run):
            p.kill()
            continue
        time.sleep(rng.uniform(0.0, 1.5))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        p.communicate(timeout=60)
    assert kills >= 1
    p = _spawn_train(run, ["--resume"])
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    a = torch.load(list_checkpoints(straight)[-1], weights_only=False)
    b = torch.load(list_checkpoints(run)[-1], weights_only=False)
    assert a["step"] == b["step"] == 40
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=6),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)
frames = st.lists(st.one_of(
    json_values,
    st.fixed_dictionaries({"file_path": json_values, "transform_matrix": json_values}),
    st.fixed_dictionaries({"file_path": st.just("./train/r_0"),
                           "transform_matrix": st.lists(st.lists(st.floats(allow_nan=True), max_size=5), max_size=5)}),
), max_size=3)
transforms = st.one_of(json_values, st.fixed_dictionaries({"camera_angle_x": json_values, "frames": frames}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=transforms, raw=st.booleans())
def test_malformed_transforms_json_only_raises_dataset_error(tmp_path, doc, raw):
    root = tmp_path / "fuzz"
    (root / "train").mkdir(parents=True, exist_ok=True)
    if not (root / "train" / "r_0.png").exists():
        iio.imwrite(root / "train" / "r_0.png", np.zeros((4, 4, 4), np.uint8))
    text = json.dumps(doc)
    if raw:
        text = text[: len(text) // 2]  # truncated file
    (root / "transforms_train.json").write_text(text)
    try:
        load_scene(DataOptions(path=str(root)), "train")
    except DatasetError as exc:
        assert "\n" not in str(exc) and "transforms_train.json" in str(exc) or "r_0" in str(exc) or str(root) in str(exc)


def test_malformed_yaml_config_from_the_command_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_steps: [1, 2\n")
    code, err = _train_cli(capsys, "--config", str(bad), "--out", str(tmp_path / "r"))
    assert code == 2 and f"{bad}: malformed YAML at line" in err and len(err.splitlines()) == 1


def test_llff_images_and_poses_must_match(tmp_path, capsys, fern_dir):
    root = tmp_path / "fern"
    (root / "images_8").mkdir(parents=True)
    (root / "poses_bounds.npy").write_bytes((fern_dir / "poses_bounds.npy").read_bytes())
    for src in sorted((fern_dir / "images_8").iterdir())[:5]:  # 5 images for 20 poses
        (root / "images_8" / src.name).write_bytes(src.read_bytes())
    code, err = _train_cli(capsys, "--data", str(root), "--out", str(tmp_path / "r"))
    assert code == 2 and "holds 5 images but poses_bounds.npy has 20 poses" in err and len(err.splitlines()) == 1


def test_keep_freed_memory_tunes_glibc_and_can_be_switched_off():
    """In a fresh interpreter: glibc's mallopt accepts both settings on Linux; the variable turns it off."""
    code = "from nerf.commands.allocator import keep_freed_memory; print(keep_freed_memory())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True,
                         env={**os.environ, "NERF_KEEP_FREED_MEMORY": "0"})
    assert on.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")
    assert off.stdout.strip() == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_return_freed_memory_hands_kept_pages_back():
    """With freed memory kept in the heap (keep_freed_memory), a freed 400 MB tensor stays
    resident; return_freed_memory gives its pages back (train-scene calls it after dropping the
    training images, before the evaluation loads the test split)."""
    code = (
        "import os, torch\n"
        "from nerf.commands.allocator import keep_freed_memory, return_freed_memory\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "keep_freed_memory()\n"
        "x = torch.ones(100 * 2**20)\n"
        "del x\n"
        "kept = rss()\n"
        "ok = return_freed_memory()\n"
        "print(kept, rss(), ok)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    kept, after, ok = out.stdout.split()
    assert ok == "True" and int(kept) - int(after) > 300 * 2**20, out.stdout


def test_resume_compares_only_the_model_keys_the_checkpoint_saved():
    """A checkpoint written before a config key existed (at any depth, e.g. model.fast.*) still
    resumes, and so does one that spelled the paper model's keys flat (model.width); a changed
    value of the method in use is named with its full dotted key; other methods' keys do not count."""
    from nerf.training.trainer import _config_changes

    saved = {"method": "fast", "width": 64, "fast": {"grid_res": 128, "steps": 256}}
    now = {"method": "fast", "nerf": {"width": 64, "depth": 8}, "fast": {"grid_res": 128, "steps": 256, "new": 1}}
    assert _config_changes(saved, now) == []
    now["fast"]["grid_res"] = 256
    assert _config_changes(saved, now) == ["fast.grid_res"]
    old_nerf = {"method": "nerf", "width": 64, "fast": {"grid_res": 7}}
    assert _config_changes(old_nerf, {"method": "nerf", "nerf": {"width": 64}, "fast": {"grid_res": 128}}) == []
    assert _config_changes(old_nerf, {"method": "nerf", "nerf": {"width": 32}, "fast": {}}) == ["nerf.width"]
