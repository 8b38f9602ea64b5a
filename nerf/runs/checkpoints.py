"""Atomic checkpoint files: `checkpoints/step_NNNNNNN.pt`, newest valid one found on resume.

A checkpoint is written to a temporary file in the same folder, flushed, fsynced and renamed
over its final name, then the folder is fsynced: a crash at any moment leaves either the old
set or the new file complete, never a half-written `step_*.pt`.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import torch

PATTERN = re.compile(r"^step_(\d{7,})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:07d}.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    """Write `state` atomically as step `step` and delete all but the newest `keep` checkpoints."""
    buf = io.BytesIO()
    torch.save(state, buf)
    path = checkpoint_path(run_dir, step)
    atomic_write_bytes(path, buf.getvalue())
    for old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := PATTERN.match(p.name))]
    return [p for _, p in sorted(found)]


def load_latest_checkpoint(run_dir: Path, map_location="cpu") -> tuple[dict, Path] | None:
    """The newest checkpoint that loads, skipping corrupt or truncated ones with a warning."""
    for path in reversed(list_checkpoints(run_dir)):
        try:
            state = torch.load(path, map_location=map_location, weights_only=False)
            if not isinstance(state, dict) or "model" not in state or "step" not in state:
                raise ValueError("missing model or step")
            return state, path
        except Exception as exc:  # a truncated zip, a bad pickle, a wrong object
            warnings.warn(f"{path}: skipping unreadable checkpoint ({type(exc).__name__}: {exc})", stacklevel=2)
    return None
