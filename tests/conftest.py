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


def installed_script(command: str) -> Path:
    """The console script pip installed for `command` (beside this Python), as a user runs it."""
    path = Path(sys.executable).parent / command
    if not path.is_file():
        pytest.fail(f"{command}: not installed beside {sys.executable}; run `pip install -e .` first")
    return path


def run_cli(command: str, *args: str, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run a console command (train-scene, eval-scene, ...) through its installed entry point in a
    subprocess, as a user does (`pip install -e .` makes it run this checkout's code)."""
    return subprocess.run([str(installed_script(command)), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=dict(os.environ))
