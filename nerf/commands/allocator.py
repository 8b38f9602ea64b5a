"""Keep freed memory inside the process (Linux, glibc), so per-step temporaries reuse pages.

A training or rendering step allocates and frees tens of tensors of 10-100 MB (gathered grid
features, their gradients, scatter buffers). glibc serves blocks that large with mmap and unmaps
them on free, so every step page-faults (and zero-fills) them afresh. Turning mmap allocation
off and raising the trim threshold keeps the freed blocks in the heap for the next step
(docs/performance.md has the measured gain on NDC training steps and renders). The cost: freed
blocks stay resident, so peak memory rises. This is the page-fault cost Intel's PyTorch guides
remove with jemalloc or tcmalloc, done with the allocator every Linux Python already has.
NERF_KEEP_FREED_MEMORY=0 leaves the allocator alone.

`return_freed_memory` is the other half: after a phase that freed much at once (train-scene drops
the training images before its evaluation), the heap's free pages go back to the system, so
they do not add to the next phase's peak.
"""
from __future__ import annotations

import ctypes
import gc
import os
import sys

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30  # return freed memory to the system only beyond 1 GiB at the heap's top


def _glibc_function(name: str):
    """glibc's function `name`, or None off Linux or with musl or another libc (left alone)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL("libc.so.6"), name)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Tune glibc's malloc once per process; False (and no change) off Linux/glibc or when disabled."""
    mallopt = _glibc_function("mallopt")
    if os.environ.get("NERF_KEEP_FREED_MEMORY", "1") == "0" or mallopt is None:
        return False
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1


def return_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim: whole free pages
    anywhere in the heap, not only at its top); False off Linux/glibc or when nothing was returned."""
    trim = _glibc_function("malloc_trim")
    if trim is None:
        return False
    gc.collect()
    return trim(0) == 1
