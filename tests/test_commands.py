"""Each command end to end on a tiny config, as a user runs it, plus its error handling."""
import json

import imageio.v2 as iio2
import pytest
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

TINY = [
    "model.method=nerf", "data.synthetic.resolution=16", "data.synthetic.n_train=6", "data.synthetic.n_test=3",
    "model.depth=2", "model.width=32", "model.view_width=16", "model.skip_layer=0",
    "model.n_coarse=8", "model.n_fine=8", "model.pos_freqs=4", "model.dir_freqs=2",
    "train.batch_rays=64", "train.max_steps=10", "train.log_every=2", "train.eval_every=5",
    "train.checkpoint_every=5",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cmd") / "run"
    proc = run_cli("train-scene", "--out", str(run), "--seed", "3", *TINY)
    assert proc.returncode == 0, proc.stderr
    return run, proc


def test_train_scene_writes_the_run_folder(trained_run):
    run, proc = trained_run
    assert "outputs in" in proc.stdout and "tensorboard --logdir" in proc.stdout
    # the built-in scene's run ends with something to look at, named in its last lines
    sheet, video = run / "renders" / "contact_sheet.png", run / "videos" / "turntable.mp4"
    assert str(sheet) in proc.stdout and str(video) in proc.stdout
    img = iio2.imread(sheet)
    assert img.ndim == 3 and img.shape[1] > 2 * 3 * 16 and img.std() > 10  # 3 test views, render | truth
    assert len(iio2.mimread(video, memtest=False)) == 48
    assert (run / "config.yaml").is_file() and (run / "scene.json").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000005.pt", "step_0000010.pt"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["n_views"] == 3 and metrics["step"] == 10
    assert 5.0 < metrics["psnr"] < 60.0 and 0.0 < metrics["ssim"] <= 1.0
    assert len(metrics["per_image"]) == 3 and "depth_mae" in metrics
    # the renders alone take part of the evaluation's time per view (which adds scoring and PNGs)
    assert 0 < metrics["render_seconds_per_view"] < metrics["seconds_per_view"] * 3
    assert len(list((run / "renders" / "test").glob("*.png"))) == 6
    assert "train.seed: 3" not in proc.stdout  # the seed lands in the saved config, not chatter
    assert "seed: 3" in (run / "config.yaml").read_text()


def test_tensorboard_events_have_the_named_tags(trained_run):
    run, _ = trained_run
    ea = EventAccumulator(str(run), size_guidance={"images": 0, "scalars": 0})
    ea.Reload()
    tags = ea.Tags()
    for tag in ("train/loss", "train/psnr", "train/psnr_coarse", "train/lr", "perf/rays_per_s",
                "perf/samples_per_s", "perf/samples_per_ray", "eval/psnr", "eval/ssim"):
        assert tag in tags["scalars"], tag
    for tag in ("eval/rgb", "eval/depth", "eval/opacity", "eval/gt"):
        assert tag in tags["images"], tag
    assert [e.step for e in ea.Scalars("eval/psnr")] == [5, 10]
    assert ea.Scalars("perf/samples_per_ray")[0].value == 8 + 8 + 8
    lr = [e.value for e in ea.Scalars("train/lr")]
    assert lr[0] > lr[-1]  # exponential decay


def test_eval_scene_scores_evenly_spaced_views(trained_run):
    run, _ = trained_run
    proc = run_cli("eval-scene", str(run), "--max-views", "2", "--quiet")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_views"] == 2 and [f["name"] for f in metrics["per_image"]] == ["test_000", "test_002"]
    assert "psnr" in metrics and "ssim" in metrics


def test_render_video_writes_the_asked_frames(trained_run):
    run, _ = trained_run
    proc = run_cli("render-video", str(run), "--frames", "7", "--fps", "10", "--quiet")
    assert proc.returncode == 0, proc.stderr
    for name in ("rgb.mp4", "depth.mp4"):
        reader = iio2.get_reader(run / "videos" / name)
        assert reader.count_frames() == 7
        assert reader.get_meta_data()["size"] == (16, 16)
        reader.close()


def test_resume_continues_and_existing_run_is_refused(trained_run):
    run, _ = trained_run
    proc = run_cli("train-scene", "--out", str(run), "--quiet", *TINY)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "already holds a run" in proc.stderr
    proc = run_cli("train-scene", "--out", str(run), "--resume", "--no-eval", "--no-showcase", "train.max_steps=12")
    assert proc.returncode == 0, proc.stderr
    assert "from step_0000010.pt" in proc.stdout
    assert (run / "checkpoints" / "step_0000012.pt").is_file()


@pytest.mark.parametrize("args,needle", [
    (["train.max_stepz=3"], "unknown config key 'train.max_stepz' (did you mean 'train.max_steps'?)"),
    (["train.max_steps=ten"], "'train.max_steps' must be int"),
    (["train.lr=-1"], "train.lr: must be > 0"),
    (["--data", "/no/such/folder"], "/no/such/folder: dataset folder not found"),
    (["--config", "/no/such.yaml"], "/no/such.yaml: config file not found"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_gets_one_line_and_exit_2(tmp_path, args, needle):
    proc = run_cli("train-scene", "--out", str(tmp_path / "r"), *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_eval_and_video_on_a_missing_run(tmp_path):
    for cmd in ("eval-scene", "render-video"):
        proc = run_cli(cmd, str(tmp_path / "nothing"))
        assert proc.returncode == 2 and "run folder not found" in proc.stderr


def test_help_for_every_command():
    for cmd in ("train-scene", "eval-scene", "render-video"):
        proc = run_cli(cmd, "--help")
        assert proc.returncode == 0 and "--seed" in proc.stdout


def test_quiet_prints_only_errors(tmp_path):
    """--quiet: a whole run (training, evaluation, the showcase) prints nothing; an error still
    prints its one line."""
    run = tmp_path / "quiet"
    proc = run_cli("train-scene", "--out", str(run), "--quiet", *TINY, "train.max_steps=2")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", (proc.stdout, proc.stderr)
    proc = run_cli("eval-scene", str(run), "--quiet")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    proc = run_cli("train-scene", "--out", str(run), "--quiet", *TINY)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
