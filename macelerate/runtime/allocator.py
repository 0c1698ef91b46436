"""Tame glibc malloc for PyTorch CPU inference.

Why: a MACE step on the CPU allocates and frees large edge tensors ([n_edges, channels x 2(L+1)^2],
tens to hundreds of MB) dozens of times. glibc serves blocks above its mmap threshold (adaptive, at
most 32 MiB) with fresh ``mmap`` calls, and ``free`` unmaps them again, so every step re-faults and
re-zeroes the same pages in the kernel: system time rivals user time. The threshold cannot be set
above 32 MiB, so macelerate switches ``mmap`` off for the heap (``M_MMAP_MAX=0``; glibc still falls
back to ``mmap`` when the heap cannot grow) and raises ``M_TRIM_THRESHOLD`` so freed memory stays in
the process and is reused by the next step.

This is process-wide state of the C allocator (not of torch). It is applied once, only on glibc,
and can be refused with ``load(..., tune_allocator=False)`` or ``MACELERATE_TUNE_MALLOC=0``.
The price is a process that keeps its peak heap instead of returning it to the OS.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from dataclasses import dataclass

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune_malloc_for_tensors` did: ``applied`` and, if not, ``reason``."""

    applied: bool
    reason: str = ""


_STATE: AllocatorTuning | None = None


def tune_malloc_for_tensors() -> AllocatorTuning:
    """Keep large tensor allocations on glibc's heap, once per process.

    Later calls return the first call's result without touching the allocator again.
    """
    global _STATE
    if _STATE is not None:
        return _STATE
    if os.environ.get("MACELERATE_TUNE_MALLOC", "1") == "0":
        _STATE = AllocatorTuning(False, "MACELERATE_TUNE_MALLOC=0")
    elif platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _STATE = AllocatorTuning(False, "not glibc")
    elif "tcmalloc" in os.environ.get("LD_PRELOAD", "") or "jemalloc" in os.environ.get(
        "LD_PRELOAD", ""
    ):
        _STATE = AllocatorTuning(False, "another allocator is preloaded")
    else:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok_mmap = libc.mallopt(M_MMAP_MAX, 0)
        ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        applied = bool(ok_mmap) and bool(ok_trim)
        _STATE = AllocatorTuning(applied, "" if applied else "mallopt refused the values")
    return _STATE
