"""Shared helpers for benchmark scripts: machine facts, medians, peak memory, CSV/PNG output, dated result names.

Result files in benchmarks/results/ are named by study and date: <study>-<YYYY-MM-DD>.<ext>, or
<study>-<tag>-<YYYY-MM-DD>.<ext>; dated() makes such a name (today's date by default) and latest()
finds the newest one of a study (a later stage reading an earlier stage's output).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import glob
import json
import os
import platform
import resource
import statistics
import subprocess
from pathlib import Path

import torch

from nerf.commands.allocator import keep_freed_memory

KEEP_FREED_MEMORY = keep_freed_memory()  # as the commands do (nerf/allocator.py)
RESULTS = Path(__file__).resolve().parent / "results"
LEGO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nerf_synthetic" / "lego"
DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"  # YYYY-MM-DD


def today() -> str:
    return datetime.date.today().isoformat()


def dated(name: str, ext: str, date: str | None = None) -> Path:
    """RESULTS/<name>-<date>.<ext> (date YYYY-MM-DD, default today); name is the study, with any tag."""
    return RESULTS / f"{name}-{date or today()}.{ext}"


def latest(name: str, ext: str) -> Path | None:
    """The newest dated results file of a study (RESULTS/<name>-<YYYY-MM-DD>.<ext>); None if there is none."""
    found = sorted(RESULTS.glob(f"{glob.escape(name)}-{DATE_GLOB}.{ext}"))
    return found[-1] if found else None


def latest_each(pattern: str, ext: str) -> dict[str, Path]:
    """The newest dated results file of every study whose name matches a glob pattern, as {name: path}."""
    newest = {}
    for path in sorted(RESULTS.glob(f"{pattern}-{DATE_GLOB}.{ext}")):  # dates sort in time order
        newest[path.name[:-len(f"-YYYY-MM-DD.{ext}")]] = path
    return dict(sorted(newest.items()))


def machine() -> dict:
    """What a figure depends on: commit, threads, CPU, torch version, load at the start."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "unknown"
    return {"commit": commit, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__, "cores": os.cpu_count(), "load_avg_1min": os.getloadavg()[0],
            "keep_freed_memory": KEEP_FREED_MEMORY}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def parse_variant(text: str, allow_empty: bool = False) -> tuple[str, list[str]]:
    """--variant NAME=KEY=VALUE[,KEY=VALUE] -> (NAME, overrides); NAME= (no overrides) only with
    allow_empty (the run's own settings)."""
    name, sep, overrides = text.partition("=")
    if not name or not sep or not (overrides or allow_empty):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=KEY=VALUE[,KEY=VALUE]" + (" or NAME=" if allow_empty else ""))
    return name, [o for o in overrides.split(",") if o]


def median(xs) -> float:
    return float(statistics.median(xs))


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def plot_curves(path: Path, curves: dict[str, tuple[list[float], list[float]]], title: str,
                xlabel: str = "training time (min)", ylabel: str = "test PSNR (dB)") -> bool:
    """A PNG of named (x, y) curves; False (and no file) if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed (pip install -e '.[bench]'): skipping the plot")
        return False
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, (x, y) in curves.items():
        ax.plot(x, y, marker="o", label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


@contextlib.contextmanager
def native_kernels(on: bool):
    """NERF_NATIVE set to 1 (the C kernels of render/native.py in use) or 0 (the torch code)
    inside the block, as it was after: the two compared in one process."""
    before = os.environ.get("NERF_NATIVE")
    os.environ["NERF_NATIVE"] = "1" if on else "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["NERF_NATIVE"]
        else:
            os.environ["NERF_NATIVE"] = before
