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
The price is a process that keeps its peak heap instead of returning it to the OS, and a heap that
fragments: measured on GO-MACE, macelerate's peak memory grew faster than mace-torch's and ran out
of memory at 10,440 atoms. :func:`heap_mode_for` therefore keeps the setting only for steps whose
per-edge tensors stay below :func:`heap_mode_limit_bytes`; larger steps go back to glibc's own
mmap behaviour (and the freed heap is trimmed once when they do).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from dataclasses import dataclass

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: keep up to 2 GiB of free heap
GLIBC_DEFAULT_MMAP_MAX = 65536
HEAP_MODE_RAM_FRACTION = 0.1
"""Heap mode is kept while the largest per-edge tensor of a step is below this fraction of physical
memory. Measured on GO-MACE (float32, graphene-oxide slab, 2-core 24 GiB machine): in heap mode the
peak RSS was about 5x that tensor (5,220 atoms: 2.0 GB tensor, 10.6 GB peak, 2.2x faster than
glibc's default policy), and at 10,440 atoms (4.1 GB tensor) heap mode ran out of memory."""


@functools.cache
def heap_mode_limit_bytes() -> int:
    """Largest per-edge tensor (bytes) for which heap mode is kept: a fraction of physical RAM."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        ram = 16 * 1024**3
    return int(HEAP_MODE_RAM_FRACTION * ram)


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune_malloc_for_tensors` did: ``applied`` and, if not, ``reason``."""

    applied: bool
    reason: str = ""


_STATE: AllocatorTuning | None = None
_HEAP_MODE = False


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def tune_malloc_for_tensors() -> AllocatorTuning:
    """Keep large tensor allocations on glibc's heap, once per process.

    Later calls return the first call's result without touching the allocator again.
    """
    global _STATE, _HEAP_MODE
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
        libc = _libc()
        ok_mmap = libc.mallopt(M_MMAP_MAX, 0)
        ok_trim = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
        applied = bool(ok_mmap) and bool(ok_trim)
        _STATE = AllocatorTuning(applied, "" if applied else "mallopt refused the values")
        _HEAP_MODE = applied
    return _STATE


def heap_mode_for(edge_tensor_bytes: int) -> bool:
    """Keep large blocks on the heap for this step only if its edge tensors are small enough.

    Args:
        edge_tensor_bytes: estimated size of the step's largest per-edge tensor, in bytes.

    Returns:
        True if the step runs with large blocks on the heap. Does nothing (and returns False)
        unless :func:`tune_malloc_for_tensors` was applied in this process.
    """
    global _HEAP_MODE
    if _STATE is None or not _STATE.applied:
        return False
    wanted = edge_tensor_bytes <= heap_mode_limit_bytes()
    if wanted != _HEAP_MODE:
        libc = _libc()
        libc.mallopt(M_MMAP_MAX, 0 if wanted else GLIBC_DEFAULT_MMAP_MAX)
        if not wanted:
            libc.malloc_trim(0)  # hand the heap kept so far back before the large steps
        _HEAP_MODE = wanted
    return wanted


RELEASE_AFTER_BYTES = 256 * 1024**2
"""A step whose largest per-edge tensor exceeds this (bytes) hands the kept heap back afterwards
(:func:`release_heap_after`): one large evaluation should not leave gigabytes behind."""


def release_heap_after(edge_tensor_bytes: int) -> bool:
    """After a step: return the freed heap to the OS if the step was large (see above).

    Returns True if ``malloc_trim`` ran. Does nothing unless :func:`tune_malloc_for_tensors` was
    applied in this process (otherwise glibc already returns large blocks by itself).
    """
    if _STATE is None or not _STATE.applied or edge_tensor_bytes <= RELEASE_AFTER_BYTES:
        return False
    _libc().malloc_trim(0)
    return True
