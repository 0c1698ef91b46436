"""Speed and memory benchmarks: ``macelerate bench`` as a library.

``run_bench(BenchSpec(models=...))`` times every (model, size, engine) in a fresh worker process
(:mod:`macelerate.bench.worker`); :func:`bench_payload` turns the rows into the results file of
``SCHEMA.md`` and :func:`markdown_table` into a table. Names are imported on first use, so that
``python -m macelerate.bench.worker`` does not import the worker module twice.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BenchResult": "suite",
    "BenchSpec": "suite",
    "BenchSpecError": "suite",
    "run_bench": "suite",
    "bench_payload": "results",
    "markdown_table": "results",
    "text_table": "results",
    "SYSTEMS": "systems",
    "BuiltSystem": "systems",
    "build_system": "systems",
    "repeat_structure": "systems",
    "TimingResult": "timing",
    "time_callable": "timing",
    "MemoryReading": "memory",
    "PeakMemoryTracker": "memory",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'macelerate.bench' has no attribute {name!r}")
    return getattr(importlib.import_module(f"macelerate.bench.{_EXPORTS[name]}"), name)
