"""What every command shares: a one-line argument parser, error handling, the common flags,
the device, the process set-up and the run config's default file.

Every command prints bad input as one line naming the file or option and exits with status 2
(`--debug` shows the traceback instead); an interrupted training run saves a checkpoint first.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from nerf.commands.allocator import keep_freed_memory
from nerf.errors import USER_ERRORS, UserError


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (plus a pointer to --help), exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def run_command(prog: str, fn, argv: list[str] | None) -> int:
    """Run `fn(argv)`: user errors become one line on stderr and exit status 2."""
    argv = sys.argv[1:] if argv is None else argv
    keep_freed_memory()
    debug = "--debug" in argv
    try:
        return fn(argv) or 0
    except USER_ERRORS as exc:
        if debug:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=None, help="random seed (default from the config)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="where to run (auto: CUDA when available, else CPU)")
    parser.add_argument("--quiet", action="store_true", help="print only errors (no progress bars, no summary)")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def printer(quiet: bool):
    """print, or nothing with --quiet."""
    return (lambda *a, **k: None) if quiet else print


def pick_device(name: str = "auto") -> torch.device:
    """CUDA when present (auto), else CPU; `cuda` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def default_config(data: str | None, fmt: str | None = None, method: str | None = None) -> str | None:
    """The config used when --config is absent: for the built-in scene builtin.yaml, else
    configs/<format>.yaml for the detected (or `fmt`, a data.format override) format; with a
    `method` (a model.method override) configs/<base>_<method>.yaml when it exists (e.g.
    blender_fast.yaml, builtin_nerf.yaml); else the paper defaults."""
    from nerf.datasets.registry import detect_format
    from nerf.settings import CONFIG_DIR

    if data is None:
        base = "builtin"
    else:
        root = Path(data).expanduser()
        if not root.is_dir():
            return None  # the loader reports the missing folder
        base = detect_format(root) if fmt in (None, "auto") else fmt
    for name in ([f"{base}_{method}"] if method else []) + [base]:
        cand = CONFIG_DIR / f"{name}.yaml"
        if cand.is_file():
            return str(cand)
    return None


def override_value(overrides: list[str], key: str) -> str | None:
    """The value of the last `key=VALUE` among `overrides`, or None."""
    found = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == key]
    return found[-1] if found else None
