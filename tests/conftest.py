"""Shared fixtures: the real data folders (skipped with a reason when absent) and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
LEGO = SHARED / "nerf_synthetic" / "lego"
FERN = SHARED / "nerf_llff_data" / "fern"


@pytest.fixture
def lego_dir() -> Path:
    if not (LEGO / "transforms_train.json").is_file():
        pytest.skip(f"real data not found: {LEGO} (the lego scene lives in ../shared/data beside the project)")
    return LEGO


@pytest.fixture
def fern_dir() -> Path:
    if not (FERN / "poses_bounds.npy").is_file():
        pytest.skip(f"real data not found: {FERN} (the fern scene lives in ../shared/data beside the project)")
    return FERN


def run_cli(command: str, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console command (train-scene, eval-scene, ...) from this checkout in a subprocess.

    Uses `python -m nerf <command>` with this checkout first on the path, so the test exercises
    the code under test whether or not the package is installed.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "nerf", command, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=env)
