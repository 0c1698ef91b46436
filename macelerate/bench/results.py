"""The bench results file (schema ``macelerate-bench/1``) and its Markdown table."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import torch

from macelerate.bench.suite import SCHEMA, BenchResult, BenchSpec
from macelerate.bench.worker import REFERENCE_ENGINE

PACKAGES = {"macelerate": "macelerate", "torch": "torch", "mace-torch": "mace-torch",
            "e3nn": "e3nn", "ase": "ase"}  # fmt: skip


MAX_CELL = 90
"""Characters of an error message shown in a table cell (the JSON file has all of it)."""


def versions() -> dict[str, str]:
    """Installed versions of macelerate, torch, mace-torch, e3nn, ase and Python."""
    found = {}
    for key, distribution in PACKAGES.items():
        try:
            found[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            found[key] = "not installed"
    found["python"] = platform.python_version()
    return found


def device_info(device: str, name: str | None) -> dict[str, Any]:
    """``{"kind", "name", "cores", "torch_threads"}`` of the machine the workers ran on.

    ``name`` is what a worker reported; without one, the CPU model is read here (a GPU's name is
    not, so that the parent never initialises CUDA).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    kind = "cuda" if device.startswith("cuda") else "cpu"
    if name is None and kind == "cpu":
        from macelerate.bench.worker import device_name

        name = device_name("cpu")
    return {"kind": kind, "name": name or "unknown", "cores": cores,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def bench_payload(
    spec: BenchSpec, results: Sequence[BenchResult], *, command: str, device_name: str | None
) -> dict[str, Any]:
    """The whole results file as a JSON-ready dict (see ``macelerate/bench/SCHEMA.md``)."""
    return {
        "schema": SCHEMA,
        "command": command,
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(spec.device, device_name),
        "versions": versions(),
        "settings": {
            "repeats": spec.repeats,
            "warmup": spec.warmup,
            "dtype": spec.dtype,
            "device": spec.device,
            "stress": spec.stress,
            "reference_stress": True,
        },
        "limits": {"memory_limit_gb": spec.memory_limit_gb, "timeout_s": spec.timeout_s},
        "results": [row.to_json() for row in results],
    }


def speedups(rows: Sequence[dict[str, Any]]) -> list[float | None]:
    """Per row: mace-torch's median ms / this row's, on the same model, system and size."""
    reference = {
        (r["model"], r["system"], r["n_atoms"]): r["ms_per_step"]["median"]
        for r in rows
        if r["engine"] == REFERENCE_ENGINE and r["status"] == "ok"
    }
    out: list[float | None] = []
    for r in rows:
        ref = reference.get((r["model"], r["system"], r["n_atoms"]))
        ok = r["status"] == "ok" and r["engine"] != REFERENCE_ENGINE and ref is not None
        out.append(ref / r["ms_per_step"]["median"] if ok else None)
    return out


def _cells(row: dict[str, Any], speedup: float | None) -> list[str]:
    if row["status"] != "ok":
        what = "OOM" if row["status"] == "oom" else "error"
        timing = f"{what}: {row['error'] or ''}".replace("|", "/")
        timing = timing if len(timing) <= MAX_CELL else timing[: MAX_CELL - 1] + "…"
        rest = ["—"] * 5
    else:
        ms = row["ms_per_step"]
        timing = f"{ms['median']:.2f} [{ms['min']:.2f}–{ms['max']:.2f}]"
        peak = row["peak_memory_mb"]
        rest = [
            f"{row['steps_per_s']:.2f}",
            f"{row['graph_ms']['median']:.2f}" if row["graph_ms"] else "—",
            f"{peak:.0f}" if peak is not None else "—",
            f"{row['mean_neighbors']:.1f}" if row["mean_neighbors"] is not None else "—",
            f"{speedup:.2f}x" if speedup is not None else "—",
        ]
    engine = (
        row["engine"] if row["engine"] == REFERENCE_ENGINE else f"{row['engine']} ({row['lever']})"
    )
    return [row["model_label"], row["system"], str(row["n_atoms"]), engine, timing, *rest]


HEADER = ("model", "system", "atoms", "engine", "ms/step median [min–max]", "steps/s",
          "graph ms", "peak MB", "neighbours", "speed-up vs mace-torch")  # fmt: skip


def _table_cells(payload: dict[str, Any]) -> list[list[str]]:
    rows = payload["results"]
    return [_cells(row, speedup) for row, speedup in zip(rows, speedups(rows))]


def _footnote(payload: dict[str, Any]) -> str:
    settings, device = payload["settings"], payload["device"]
    stress = "forces + stress" if settings["stress"] else "forces (mace-torch: + stress)"
    return (
        f"{device['kind']}: {device['name']}, {device['torch_threads']} torch threads; "
        f"{settings['dtype']}; energy + {stress}; median of {settings['repeats']} steps after "
        f"{settings['warmup']} warm-up; peak MB (MiB) = {_memory_kinds(payload['results'])}."
    )


def markdown_table(payload: dict[str, Any]) -> str:
    """The results as a Markdown table, with the speed-up over mace-torch per size."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _table_cells(payload)]
    return "\n".join([*lines, "", _footnote(payload)])


def text_table(payload: dict[str, Any]) -> str:
    """The same table as :func:`markdown_table`, as aligned plain text for a terminal."""
    table = [list(HEADER), *_table_cells(payload)]
    widths = [max(len(row[i]) for row in table) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join([*lines, "", _footnote(payload)])


def _memory_kinds(rows: Sequence[dict[str, Any]]) -> str:
    kinds = sorted({r["memory_kind"] for r in rows if r["memory_kind"]})
    return ", ".join(kinds) if kinds else "not measured"
