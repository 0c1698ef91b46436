"""One row class for the bench results file: what the bench writes, the report reads back."""

from __future__ import annotations

import json

from macelerate.bench import worker
from macelerate.bench.schema import (
    ENGINES,
    REFERENCE_ENGINES,
    SCHEMA,
    SPREAD_LIMIT,
    BenchResult,
    timing_spread,
)
from macelerate.report.loading import load_results


def _row(**changes) -> BenchResult:
    ms = {"median": 4.0, "min": 3.0, "max": 9.0}
    fields = dict(
        model="/m/go.model", model_label="go", engine="symmetrix", lever="exact",
        system="dense-solid(C, diamond 2x2x2)", n_atoms=64, status="ok", n_edges=1024,
        mean_neighbors=16.0, ms_per_step=ms, steps_per_s=250.0,
        graph_ms=None, peak_memory_mb=120.5, memory_kind="cpu_peak_rss",
        ms_spread=timing_spread(ms), unreliable=timing_spread(ms) > SPREAD_LIMIT,
    )  # fmt: skip
    return BenchResult(**(fields | changes))


def test_rows_written_by_the_bench_read_back_equal(tmp_path):
    failed = {"ms_per_step": None, "steps_per_s": None, "ms_spread": None, "unreliable": None}
    rows = [_row(), _row(engine="macelerate", status="oom", error="MemoryError: x", **failed)]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": [r.to_json() for r in rows]}))
    (bench,) = load_results([path]).bench
    assert list(bench.rows) == rows
    assert rows[0].is_reference and not rows[1].is_reference
    assert (rows[0].ms_median, rows[0].ms_min, rows[0].ms_max) == (4.0, 3.0, 9.0)
    assert rows[0].unreliable  # 9 / 3 > SPREAD_LIMIT


def test_files_before_the_spread_keys_get_them_computed(tmp_path):
    old = {k: v for k, v in _row().to_json().items() if k not in ("ms_spread", "unreliable")}
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": SCHEMA, "results": [old]}))
    (row,) = load_results([path]).bench[0].rows
    assert row.ms_spread == 3.0 and row.unreliable is True


def test_the_worker_runs_the_schema_engines():
    assert set(worker.BUILDERS) == set(ENGINES) and set(REFERENCE_ENGINES) < set(ENGINES)
