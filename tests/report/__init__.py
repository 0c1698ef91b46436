"""Synthetic bench and eval result files that follow the JSON contracts, for the report tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SIZES = (96, 384, 1536, 6144, 24576)


def bench_row(
    model_label: str,
    engine: str,
    lever: str,
    n_atoms: int,
    ms: float | None,
    *,
    status: str = "ok",
    memory_mb: float | None = None,
    system: str | None = None,
) -> dict[str, Any]:
    """One ``results`` entry of a ``macelerate-bench/1`` file; ``ms``: median ms per step."""
    ok = status == "ok"
    return {
        "model": f"/models/{model_label}.model",
        "model_label": model_label,
        "engine": engine,
        "lever": lever,
        "system": system or f"graphene_oxide:{n_atoms}",
        "n_atoms": n_atoms,
        "n_edges": 30 * n_atoms if ok else None,
        "mean_neighbors": 30.0 if ok else None,
        "status": status,
        "error": None
        if ok
        else ("CUDA out of memory" if status == "oom" else "RuntimeError: boom"),
        "ms_per_step": {"median": ms, "min": 0.9 * ms, "max": 1.2 * ms} if ok else None,
        "steps_per_s": 1000.0 / ms if ok else None,
        "graph_ms": {"median": 0.1, "min": 0.09, "max": 0.2} if ok else None,
        "peak_memory_mb": memory_mb if ok else None,
        "memory_kind": "cuda_max_allocated" if ok else None,
    }


def bench_payload(rows: list[dict[str, Any]], *, device: str = "cuda") -> dict[str, Any]:
    """A whole ``macelerate-bench/1`` file around ``rows``."""
    return {
        "schema": "macelerate-bench/1",
        "command": "macelerate bench /models/go-mace.model --engine macelerate mace-torch",
        "date_utc": "2025-01-02T03:04:05+00:00",
        "device": {
            "kind": device,
            "name": "NVIDIA H100 80GB HBM3",
            "cores": 16,
            "torch_threads": 16,
        },
        "versions": {"macelerate": "0.1.0", "torch": "2.13.0", "mace-torch": "0.3.16"}
        | {"e3nn": "0.4.4", "ase": "3.29.0", "python": "3.11.2"},
        "settings": {"repeats": 20, "warmup": 5, "dtype": "float64", "device": device},
        "results": rows,
    }


def eval_payload(
    model_label: str, lever: str, force_rmse: float | None, *, against: str | None = None
) -> dict[str, Any]:
    """A ``macelerate-eval/1`` file; force MAE is 0.8 x RMSE, energies and stress fixed."""
    return {
        "schema": "macelerate-eval/1",
        "model": f"/models/{model_label}.model",
        "model_label": model_label,
        "lever": lever,
        "data": "/data/go_test.xyz",
        "dtype": "float64",
        "against": against,
        "n_structures": 10,
        "n_atoms": 2450,
        "energy_mae": 1.5,
        "energy_rmse": 2.0,
        "force_mae": None if force_rmse is None else 0.8 * force_rmse,
        "force_rmse": force_rmse,
        "stress_mae": None,
        "stress_rmse": None,
        "per_element": {
            "O": {"force_mae": 50.0, "force_rmse": 61.5, "n_atoms": 450},
            "C": {"force_mae": 30.0, "force_rmse": 38.25, "n_atoms": 2000},
        },
        "structures": [],
    }


def write(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload, indent=2))
    return path


# ms per step = a + b * n_atoms, peak MB = c + d * n_atoms; realistic shapes for a GPU sweep
_COSTS = {
    ("go-mace", "mace-torch", "exact"): (6.0, 0.05, 300.0, 2.8),
    ("go-mace", "macelerate", "exact"): (2.5, 0.018, 150.0, 1.1),
    ("go-mace", "macelerate", "fp32"): (2.0, 0.009, 120.0, 0.6),
    ("go-mace", "macelerate", "pruned-64"): (1.5, 0.006, 100.0, 0.45),
    ("gst-mace", "mace-torch", "exact"): (4.0, 0.03, 200.0, 1.6),
    ("gst-mace", "macelerate", "exact"): (1.8, 0.011, 90.0, 0.7),
}


def realistic_results(folder: Path) -> list[Path]:
    """A GPU size sweep (with an OOM and an error) plus eval files for most model/levers."""
    rows = []
    for (label, engine, lever), (a, b, c, d) in _COSTS.items():
        for n in SIZES:
            if n == SIZES[-1] and engine == "mace-torch":
                status = "oom" if label == "go-mace" else "error"
                rows.append(bench_row(label, engine, lever, n, None, status=status))
            else:
                rows.append(bench_row(label, engine, lever, n, a + b * n, memory_mb=c + d * n))
    paths = [write(folder / "bench.json", bench_payload(rows))]
    errors = {("go-mace", "exact"): 45.1, ("go-mace", "fp32"): 45.4}
    errors |= {("go-mace", "pruned-64"): 52.3, ("gst-mace", "exact"): 71.0}
    errors |= {("go-mace", "distilled-32"): 60.0}  # evaluated but never benchmarked
    for (label, lever), rmse in errors.items():
        paths.append(write(folder / f"eval_{label}_{lever}.json", eval_payload(label, lever, rmse)))
    return paths
