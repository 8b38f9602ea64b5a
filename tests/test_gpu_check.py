"""benchmarks/gpu_check.py runs end to end (--tiny: on the CPU, a few tests, the built-in scene,
20 steps) and writes its record, so the GPU check cannot rot between the runs on a GPU."""
import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

FIGURES = ("tests_passed", "tests_failed", "psnr", "ssim", "n_views", "width", "height", "train_steps",
           "seconds_per_view", "video_seconds_per_frame")


def test_tiny_gpu_check_writes_its_record(tmp_path):
    out = tmp_path / "check"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny", "--out", str(out)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = list(out.glob("gpu-check-tiny-*.md"))
    assert len(records) == 1, sorted(p.name for p in out.iterdir())
    md, js = records[0], records[0].with_suffix(".json")
    assert js.is_file()
    text = md.read_text()
    for heading in ("## Protocol", "## Machine", "## Commit", "## Date", "## Table", "## Command"):
        assert heading in text, heading
    record = json.loads(js.read_text())
    f = record["figures"]
    for k in FIGURES:
        assert isinstance(f[k], (int, float)) and math.isfinite(f[k]), (k, f[k])
    assert 5 < f["psnr"] < 60 and 0 < f["ssim"] <= 1
    assert f["seconds_per_view"] > 0 and f["video_seconds_per_frame"] > 0
    assert f["tests_passed"] > 0 and f["tests_failed"] == 0 and not f["tests_timed_out"]
    assert f["n_views"] == 2 and f["train_steps"] > 0
    assert all(stage["ok"] for stage in record["stages"].values()), record["stages"]
    assert record["stages"]["environment"]["torch"] and record["stages"]["environment"]["cpu_count"] > 0
    # the table is printed at the end, and nothing went into benchmarks/results/
    assert "| figure | value |" in proc.stdout
    assert not list((ROOT / "benchmarks" / "results").glob(f"gpu-check-tiny-*{record['date']}*"))


def test_refuses_without_cuda_unless_asked_for_the_cpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr and "--tiny" in proc.stderr
    assert not list(tmp_path.iterdir())  # refused before writing anything
