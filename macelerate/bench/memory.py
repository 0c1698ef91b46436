"""Peak memory of a run, a memory limit for a worker process, and out-of-memory recognition.

The kinds of peak a reading reports (:data:`~macelerate.bench.schema.MEMORY_KINDS`) are part of
the results schema.
"""

from __future__ import annotations

import re
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from macelerate.bench.schema import CPU_PEAK_RSS, CPU_PEAK_RSS_PROCESS, CUDA_MAX_ALLOCATED

MIB = 2**20


_OUT_OF_MEMORY = re.compile(
    r"out of memory|can(?:no|')t allocate memory|bad_alloc|MemoryError|failed to map segment"
    r"|malloc failed",  # OpenBLAS: "malloc failed in gemm_driver"
    re.IGNORECASE,
)
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryReading:
    """A peak-memory measurement: ``peak_mb`` in MiB (2**20 bytes) and how it was taken."""

    peak_mb: float | None
    kind: str | None


class PeakMemoryTracker:
    """Peak memory between :meth:`reset` and :meth:`read` on one device.

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. CPU: the peak
    resident set size (``VmHWM``) of this process after resetting it by writing ``5`` to
    ``/proc/self/clear_refs``; where that is not permitted, the lifetime peak (``ru_maxrss``),
    marked by the ``kind`` :data:`CPU_PEAK_RSS_PROCESS`. CPU numbers include everything the
    process holds (interpreter, libraries, model), not only the step's tensors.

    Args:
        device: the device the measured work runs on.
    """

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self.kind: str | None = None

    def reset(self) -> None:
        """Start a new peak at the current usage."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = CUDA_MAX_ALLOCATED
            return
        try:
            _CLEAR_REFS.write_text("5")
            _read_status_kib("VmHWM")
            self.kind = CPU_PEAK_RSS
        except (OSError, KeyError):
            self.kind = CPU_PEAK_RSS_PROCESS

    def read(self) -> MemoryReading:
        """The peak since :meth:`reset` (which must have been called)."""
        if self.kind is None:
            raise RuntimeError("PeakMemoryTracker.read() called before reset()")
        if self.kind == CUDA_MAX_ALLOCATED:
            torch.cuda.synchronize(self.device)
            return MemoryReading(torch.cuda.max_memory_allocated(self.device) / MIB, self.kind)
        if self.kind == CPU_PEAK_RSS:
            return MemoryReading(_read_status_kib("VmHWM") / 1024, self.kind)
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        scale = MIB if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
        return MemoryReading(maxrss / scale, self.kind)


def _read_status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``KeyError`` if absent)."""
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def limit_address_space(limit_gb: float) -> None:
    """Cap this process's virtual address space (RLIMIT_AS) at ``limit_gb`` GiB.

    Allocations beyond the cap fail with ``MemoryError`` or torch's "can't allocate memory"
    ``RuntimeError`` instead of waking the kernel's OOM killer. Virtual size exceeds resident
    size (libraries, thread stacks and malloc arenas reserve address space), so the cap is
    looser than it looks; CUDA reserves huge address ranges and does not work under it.
    """
    if limit_gb <= 0:
        raise ValueError(f"memory limit must be positive, got {limit_gb} GB")
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = int(limit_gb * 2**30)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def is_out_of_memory(error: BaseException | str) -> bool:
    """Whether an exception (or an error text) reports that memory ran out."""
    if isinstance(error, MemoryError):
        return True
    out_of_memory_error = getattr(torch, "OutOfMemoryError", None)
    if out_of_memory_error is not None and isinstance(error, out_of_memory_error):
        return True
    if isinstance(error, BaseException) and not isinstance(error, (RuntimeError, OSError)):
        return False
    return bool(_OUT_OF_MEMORY.search(str(error)))


def physical_memory_gb() -> float | None:
    """Total physical memory in GiB (``MemTotal`` of ``/proc/meminfo``), or ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None
    return None
