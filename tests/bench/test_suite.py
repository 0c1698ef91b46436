"""run_bench on a tiny model: both engines in fresh processes, the results file, the table."""

from __future__ import annotations

import json

import pytest

from macelerate.bench.results import (
    BUSY_NOTE,
    bench_payload,
    markdown_table,
    speedups,
    text_table,
    unreliable_rows,
)
from macelerate.bench.suite import (
    BenchSpec,
    BenchSpecError,
    _row,
    model_labels,
    run_bench,
    run_worker,
)
from macelerate.bench.systems import BuiltSystem
from macelerate.errors import MacelerateError

ROW_KEYS = {
    "model", "model_label", "engine", "lever", "system", "n_atoms", "n_edges", "mean_neighbors",
    "status", "error", "ms_per_step", "steps_per_s", "graph_ms", "peak_memory_mb", "memory_kind",
    "ms_spread", "unreliable",
}  # fmt: skip


def test_both_engines_measured_in_workers(tiny_model_file):
    spec = BenchSpec(models=(str(tiny_model_file),), sizes=(8,), repeats=1, warmup=0)
    seen = []
    rows, device_name = run_bench(spec, on_result=seen.append)
    assert [r.engine for r in rows] == ["macelerate", "mace-torch"] and seen == rows
    assert device_name
    for row in rows:
        assert row.status == "ok" and row.error is None, row.error
        assert row.model_label == "tiny" and row.lever == "exact"
        assert row.system == "dense-solid(C, diamond 1x1x1)" and row.n_atoms == 8
        assert row.ms_per_step["min"] <= row.ms_per_step["median"] <= row.ms_per_step["max"]
        assert row.ms_per_step["min"] > 0 and row.graph_ms["median"] > 0
        assert row.steps_per_s == pytest.approx(1000 / row.ms_per_step["median"])
        assert row.memory_kind in ("cpu_peak_rss", "cpu_peak_rss_process")
        assert row.peak_memory_mb > 50  # a Python process with torch and a model loaded
        assert row.mean_neighbors == pytest.approx(row.n_edges / 8)
    assert rows[0].n_edges == rows[1].n_edges > 0  # same graph from vesin and from matscipy

    payload = bench_payload(spec, rows, command="macelerate bench tiny", device_name=device_name)
    payload = json.loads(json.dumps(payload))  # JSON-clean
    assert payload["schema"] == "macelerate-bench/1"
    assert {"command", "date_utc", "device", "versions", "settings", "results"} <= set(payload)
    assert set(payload["device"]) == {"kind", "name", "cores", "torch_threads"}
    assert payload["device"]["kind"] == "cpu" and payload["device"]["name"] == device_name
    assert set(payload["versions"]) == {
        "macelerate",
        "torch",
        "mace-torch",
        "e3nn",
        "ase",
        "python",
    }
    assert {"repeats": 1, "warmup": 0, "dtype": "float64", "device": "cpu"}.items() <= payload[
        "settings"
    ].items()
    assert all(set(row) == ROW_KEYS for row in payload["results"])
    table = markdown_table(payload)
    assert table.splitlines()[0].startswith("| model | system | atoms | engine |")
    expected = rows[1].ms_per_step["median"] / rows[0].ms_per_step["median"]
    assert f"{expected:.2f}x" in table


def test_worker_timeout_is_an_error_row(tiny_model_file, tmp_path):
    spec = {"engine": "macelerate", "model": str(tiny_model_file), "structure": "x.traj"}
    result = run_worker(spec, timeout_s=0.2)
    assert result == {"status": "error", "error": "timeout after 0.2 s"}


def test_spec_rejects_bad_options():
    with pytest.raises(BenchSpecError, match="memory limit caps host address space"):
        BenchSpec(models=("m",), device="cuda", memory_limit_gb=4.0)
    with pytest.raises(MacelerateError, match="unknown lever 'pruned-64'; known: exact"):
        BenchSpec(models=("m",), levers=("pruned-64",))
    with pytest.raises(MacelerateError, match="unknown precision preset 'fp8'"):
        BenchSpec(models=("m",), levers=("precision:fp8",))
    assert BenchSpec(models=("m",), levers=("precision:bf16-linear",)).levers
    with pytest.raises(BenchSpecError, match="sizes must be positive.*dtype must be"):
        BenchSpec(models=("m",), sizes=(0,), dtype="float16")


def test_labels_and_speedups_and_failed_rows():
    assert model_labels(["a/x.model", "b/y.model"]) == ["x", "y"]
    assert model_labels(["a/x.model", "a/x.pt"]) == ["x.model", "x.pt"]
    assert model_labels(["a/x.model", "b/x.model"]) == ["a/x.model", "b/x.model"]
    base = {"model": "m", "model_label": "m", "lever": "exact", "system": "s", "n_atoms": 8,
            "n_edges": 16, "mean_neighbors": 2.0, "graph_ms": {"median": 1.0},
            "peak_memory_mb": 100.0, "memory_kind": "cpu_peak_rss", "error": None}  # fmt: skip
    fast = {**base, "engine": "macelerate", "status": "ok", "ms_per_step": {"median": 2.0,
            "min": 1.0, "max": 3.0}, "steps_per_s": 500.0}  # fmt: skip
    slow = {**fast, "engine": "mace-torch", "ms_per_step": {"median": 8.0, "min": 8, "max": 9}}
    oom = {**base, "engine": "macelerate", "n_atoms": 9, "status": "oom", "ms_per_step": None,
           "steps_per_s": None, "error": "RuntimeError: std::bad_alloc"}  # fmt: skip
    assert speedups([fast, slow, oom]) == [4.0, None, None]
    payload = {
        "results": [fast, slow, oom],
        "device": {"kind": "cpu", "name": "CPU", "torch_threads": 2},
        "settings": {"dtype": "float64", "stress": False, "repeats": 5, "warmup": 2},
    }
    table = markdown_table(payload)
    # min 1.00, max 3.00: the slowest step took 3x the fastest, so the timing is flagged
    assert "| 2.00 [1.00–3.00] ! | 500.00 | 1.00 | 100 | 2.0 | 4.00x |" in table
    assert "| 8.00 [8.00–9.00] | 500.00 |" in table and BUSY_NOTE in table
    assert "OOM: RuntimeError: std::bad_alloc" in table
    assert "OOM: RuntimeError: std::bad_alloc" in text_table(payload)


def test_rows_whose_steps_spread_over_2x_are_flagged_unreliable(silicon):
    """A slowest step over twice the fastest means a busy machine: flagged in the row and table."""
    built = BuiltSystem(atoms=silicon, label="s", repeat=(1, 1, 1))

    def row(ms):
        fields = {"status": "ok" if ms else "error", "ms_per_step": ms, "n_edges": 16}
        return _row("m", "m", "macelerate", "exact", built, fields)

    busy = row({"median": 5.0, "min": 2.0, "max": 4.5})
    quiet = row({"median": 5.0, "min": 4.0, "max": 7.9})
    failed = row(None)
    assert busy.unreliable is True and busy.ms_spread == pytest.approx(2.25)
    assert quiet.unreliable is False and quiet.ms_spread == pytest.approx(1.975)
    assert failed.unreliable is None and failed.ms_spread is None
    payload = {
        "results": [r.to_json() for r in (busy, quiet, failed)],
        "device": {"kind": "cpu", "name": "CPU", "torch_threads": 2},
        "settings": {"dtype": "float64", "stress": False, "repeats": 5, "warmup": 2},
    }
    assert unreliable_rows(payload) == [payload["results"][0]]
    text = text_table(payload)
    assert "5.00 [2.00–4.50] !" in text and "5.00 [4.00–7.90]  " in text
    assert "machine busy, figures unreliable" in text
    quiet_only = {**payload, "results": payload["results"][1:]}
    assert "machine busy" not in markdown_table(quiet_only)
