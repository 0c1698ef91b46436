"""The bench results schema ``macelerate-bench/1`` in code: one row class, written and read.

``SCHEMA.md`` (beside this file) documents the JSON. :class:`BenchResult` is its row:
:mod:`macelerate.bench.suite` writes rows with :meth:`BenchResult.to_json`, and
:mod:`macelerate.report.loading` reads files back into the same class (validating every key),
so a key added here is added to both. This module imports no torch, so the report stays light.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SCHEMA = "macelerate-bench/1"
ENGINES = ("macelerate", "mace-torch", "symmetrix")
"""``engine`` values: macelerate, then the reference engines."""
REFERENCE_ENGINES = ("mace-torch", "symmetrix")
"""Engines speed-ups are measured against, in the order tables show them."""
STATUSES = ("ok", "oom", "error")

CUDA_MAX_ALLOCATED = "cuda_max_allocated"
"""Peak bytes held by torch's CUDA caching allocator since the reset (tensors only)."""
CPU_PEAK_RSS = "cpu_peak_rss"
"""Peak resident set size of the process since the reset (VmHWM after /proc/self/clear_refs)."""
CPU_PEAK_RSS_PROCESS = "cpu_peak_rss_process"
"""Fallback when the peak cannot be reset: the process's lifetime peak RSS (ru_maxrss)."""
MEMORY_KINDS = {
    CUDA_MAX_ALLOCATED: "CUDA max allocated",
    CPU_PEAK_RSS: "CPU peak RSS",
    CPU_PEAK_RSS_PROCESS: "CPU peak RSS of the whole process",
}
"""Readable names of the rows' ``memory_kind`` values; unknown kinds are shown as given."""

SPREAD_LIMIT = 2.0
"""A run whose slowest timed step took more than this many times its fastest is flagged
``unreliable``: on a quiet machine repeated steps agree within tens of percent, so a larger spread
means other work shared the cores and the median may be off."""


def timing_spread(ms_per_step: dict[str, float] | None) -> float | None:
    """Slowest over fastest timed step (``max / min`` of a row's ``ms_per_step``), or None."""
    if not ms_per_step or not ms_per_step.get("min") or ms_per_step.get("max") is None:
        return None
    return float(ms_per_step["max"]) / float(ms_per_step["min"])


@dataclass(frozen=True)
class BenchResult:
    """One row of a bench results file: a model, lever and engine on one system.

    Fields are the row's JSON keys, in schema order (see ``SCHEMA.md``). Times in ms
    (``ms_per_step`` and ``graph_ms``: ``{"median", "min", "max"}``), memory in MiB; the numbers
    are ``None`` when the run failed (``status`` ``"oom"`` or ``"error"``) or were not measured.
    """

    model: str
    model_label: str
    engine: str
    lever: str
    system: str
    n_atoms: int
    status: str
    error: str | None = None
    n_edges: int | None = None
    mean_neighbors: float | None = None
    ms_per_step: dict[str, float] | None = None
    steps_per_s: float | None = None
    graph_ms: dict[str, float] | None = None
    peak_memory_mb: float | None = None
    memory_kind: str | None = None
    ms_spread: float | None = None
    unreliable: bool | None = None

    def to_json(self) -> dict[str, Any]:
        """The row as the JSON object of the results file (keys in schema order)."""
        return dataclasses.asdict(self)

    @property
    def ms_median(self) -> float | None:
        """Median ms per step (``ms_per_step["median"]``), None if not measured."""
        return (self.ms_per_step or {}).get("median")

    @property
    def ms_min(self) -> float | None:
        """Fastest timed step in ms, None if not measured."""
        return (self.ms_per_step or {}).get("min")

    @property
    def ms_max(self) -> float | None:
        """Slowest timed step in ms, None if not measured."""
        return (self.ms_per_step or {}).get("max")

    @property
    def graph_ms_median(self) -> float | None:
        """Median ms of graph building alone, None if not measured."""
        return (self.graph_ms or {}).get("median")

    @property
    def is_reference(self) -> bool:
        """The row ran a reference engine (:data:`REFERENCE_ENGINES`)."""
        return self.engine in REFERENCE_ENGINES
