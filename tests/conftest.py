"""Shared fixtures: the device the tests train on (NERF_TEST_DEVICE), the real data folders (skipped
with a reason when absent) and a CLI runner.

NERF_TEST_DEVICE=cuda runs the tests that build a Trainer or a model on the GPU (the default is
cpu); tests that assert bit-exact reproducibility stay on the CPU, where the kernels are
deterministic. The console commands pick CUDA by themselves when it is present (--device auto).

Under pytest-xdist (`-n 2`, the README's test command) each worker process is pinned to its own
share of the cores, so workers and the commands they start never contend for one core: most
tests run small tensors, where two processes with a core each beat one process with two threads.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerf.datasets.process_data import machine_threads

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
LEGO = SHARED / "nerf_synthetic" / "lego"
FERN = SHARED / "nerf_llff_data" / "fern"

DEVICE_NAME = os.environ.get("NERF_TEST_DEVICE", "cpu")
try:
    DEVICE = torch.device(DEVICE_NAME)
except RuntimeError:  # not a device name; reported by pytest_configure
    DEVICE = torch.device("cpu")


def pin_worker_to_its_cores() -> None:
    """Give xdist worker gwK every n-th core starting at K (n workers); torch and the commands the
    tests start (which size their threads by the cores they may use) then use only those."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < count:
        return
    share = set(cores[int(worker[2:]) % count::count])
    os.sched_setaffinity(0, share)
    torch.set_num_threads(len(share))


def pytest_configure(config):
    pin_worker_to_its_cores()
    if DEVICE_NAME not in ("cpu", "cuda") and not DEVICE_NAME.startswith("cuda:"):
        pytest.exit(f"NERF_TEST_DEVICE={DEVICE_NAME!r}: expected cpu or cuda", returncode=4)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        pytest.exit(f"NERF_TEST_DEVICE={DEVICE_NAME}: no CUDA device is available "
                    f"(torch {torch.__version__}); unset it to test on the CPU", returncode=4)


def pytest_report_header(config):
    return f"nerf test device: {DEVICE} (NERF_TEST_DEVICE)"


@pytest.fixture(autouse=True)
def threads_of_the_cores():
    """Each test starts with one torch thread per core this process may use: a test whose
    command set train.threads leaves no mark on the next."""
    torch.set_num_threads(machine_threads())
    yield


@pytest.fixture
def device() -> torch.device:
    """Where the tests train and render: NERF_TEST_DEVICE, cpu by default."""
    return DEVICE


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-equal on the CPU; on CUDA, where float index_add (atomics) sums in any order, equal
    to float32 rounding."""
    if a.device.type == "cpu" and b.device.type == "cpu":
        return torch.equal(a, b)
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-6, atol=1e-6)


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
