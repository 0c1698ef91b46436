"""Speed and memory benchmarks: ``macelerate bench`` as a library.

``run_bench(BenchSpec(models=...))`` times every (model, size, engine) in a fresh worker process
(:mod:`macelerate.bench.worker`); :func:`bench_payload` turns the rows into the results file of
``SCHEMA.md`` (rows: :class:`~macelerate.bench.schema.BenchResult`) and :func:`markdown_table`
into a table. Names are imported on first use, so that
``python -m macelerate.bench.worker`` does not import the worker module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.bench.memory import MemoryReading, PeakMemoryTracker
    from macelerate.bench.results import bench_payload, markdown_table, text_table
    from macelerate.bench.schema import BenchResult
    from macelerate.bench.suite import BenchSpec, BenchSpecError, run_bench
    from macelerate.bench.systems import SYSTEMS, BuiltSystem, build_system, repeat_structure
    from macelerate.bench.timing import TimingResult, time_callable

_EXPORTS = {
    "BenchResult": "macelerate.bench.schema",
    "BenchSpec": "macelerate.bench.suite",
    "BenchSpecError": "macelerate.bench.suite",
    "run_bench": "macelerate.bench.suite",
    "bench_payload": "macelerate.bench.results",
    "markdown_table": "macelerate.bench.results",
    "text_table": "macelerate.bench.results",
    "SYSTEMS": "macelerate.bench.systems",
    "BuiltSystem": "macelerate.bench.systems",
    "build_system": "macelerate.bench.systems",
    "repeat_structure": "macelerate.bench.systems",
    "TimingResult": "macelerate.bench.timing",
    "time_callable": "macelerate.bench.timing",
    "MemoryReading": "macelerate.bench.memory",
    "PeakMemoryTracker": "macelerate.bench.memory",
}

__all__ = [
    "BenchResult",
    "BenchSpec",
    "BenchSpecError",
    "BuiltSystem",
    "MemoryReading",
    "PeakMemoryTracker",
    "SYSTEMS",
    "TimingResult",
    "bench_payload",
    "build_system",
    "markdown_table",
    "repeat_structure",
    "run_bench",
    "text_table",
    "time_callable",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
