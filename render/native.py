"""Small C kernels built on first use with the machine's C compiler and called through ctypes.

A few hot loops (reading a grid at many points) cost more as chains of whole-array torch
operations than as one pass in C: each torch operation writes its intermediate array to memory,
one C pass keeps a point's work in registers. Such a kernel is compiled once per machine (the
source, the compiler, its flags and the CPU's instruction sets name the library in a cache
folder) and loaded with ctypes, which needs no compiler headers and no build step at install.

Everything here is optional: without a C compiler, when a build fails, or with the environment
variable NERF_NATIVE=0, `load` returns None and callers keep their torch code, which computes the
same values (tests hold the two together). Kernels take raw float32 pointers of contiguous CPU
tensors and split their points over `threads` POSIX threads.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC", "-pthread", "-std=gnu99")
_loaded: dict[str, ctypes.CDLL | None] = {}


def enabled() -> bool:
    """Whether native kernels may be used (NERF_NATIVE=0 turns them off)."""
    return os.environ.get("NERF_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def cache_dir() -> Path:
    """Where built libraries are kept: NERF_NATIVE_CACHE, else ~/.cache/nerf-cpu/native."""
    env = os.environ.get("NERF_NATIVE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nerf-cpu" / "native"


def _cpu_key() -> str:
    """The CPU's instruction sets (a library built with -march=native runs only where they match)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    cc = os.environ.get("CC", "cc")
    return shutil.which(cc) or shutil.which("gcc") or shutil.which("clang")


def load(source: Path) -> ctypes.CDLL | None:
    """The library built from C file `source` (built now if this machine has none yet), or None
    when native kernels are off or cannot be built here (logged once)."""
    if not enabled():  # asked again once switched back on
        return None
    key = str(source)
    if key not in _loaded:
        try:
            _loaded[key] = _build(source)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("native kernels of %s not built (%s); using the torch code", source.name, err)
            _loaded[key] = None
    return _loaded[key]


def _build(source: Path) -> ctypes.CDLL | None:
    cc = _compiler()
    if cc is None:
        log.info("no C compiler found: native kernels off, using the torch code")
        return None
    code = source.read_bytes()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    digest = hashlib.sha256(b"\0".join([code, " ".join(FLAGS).encode(), version.encode(),
                                        _cpu_key().encode()])).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{digest}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # built under a temporary name and renamed: processes building at once never load a half-written file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([cc, *FLAGS, str(source), "-o", tmp, "-lm"], capture_output=True, text=True,
                                  timeout=300)
            if done.returncode != 0:
                errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
                raise OSError(f"{Path(cc).name} failed: {errors[0].strip() if errors else 'no message'}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return ctypes.CDLL(str(target))


def ptr(tensor) -> ctypes.c_void_p:
    """The address of a tensor's first element (the caller keeps the tensor alive and contiguous)."""
    return ctypes.c_void_p(tensor.data_ptr())
