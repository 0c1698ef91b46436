"""The bench results file (schema ``macelerate-bench/1``) and its Markdown table."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import torch

from macelerate.bench.schema import (
    REFERENCE_ENGINES,
    SCHEMA,
    SPREAD_LIMIT,
    BenchResult,
    timing_spread,
)
from macelerate.bench.suite import BenchSpec

PACKAGES = {"macelerate": "macelerate", "torch": "torch", "mace-torch": "mace-torch",
            "e3nn": "e3nn", "ase": "ase"}  # fmt: skip


MAX_CELL = 90
"""Characters of an error message shown in a table cell (the JSON file has all of it)."""
BUSY_MARK = "!"
"""Appended to the timing of a run flagged ``unreliable`` (explained under the table)."""
BUSY_NOTE = (
    f"{BUSY_MARK} slowest step over {SPREAD_LIMIT:g}x the fastest: machine busy, figures unreliable"
)


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
            "references": list(spec.references),
            "threads": spec.threads,
        },
        "limits": {"memory_limit_gb": spec.memory_limit_gb, "timeout_s": spec.timeout_s},
        "results": [row.to_json() for row in results],
    }


def speedups(
    rows: Sequence[dict[str, Any]], reference_engine: str = "mace-torch"
) -> list[float | None]:
    """Per row: the reference engine's median ms / this row's, on the same model, system and
    size (None for the reference's own rows and where either did not run)."""
    reference = {
        (r["model"], r["system"], r["n_atoms"]): r["ms_per_step"]["median"]
        for r in rows
        if r["engine"] == reference_engine and r["status"] == "ok"
    }
    out: list[float | None] = []
    for r in rows:
        ref = reference.get((r["model"], r["system"], r["n_atoms"]))
        ok = r["status"] == "ok" and r["engine"] != reference_engine and ref is not None
        out.append(ref / r["ms_per_step"]["median"] if ok else None)
    return out


def references_present(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Reference engines with rows in ``rows``, mace-torch first."""
    return [name for name in REFERENCE_ENGINES if any(r["engine"] == name for r in rows)]


def _cells(row: dict[str, Any], ratios: Sequence[float | None]) -> list[str]:
    if row["status"] != "ok":
        what = "OOM" if row["status"] == "oom" else "error"
        timing = f"{what}: {row['error'] or ''}".replace("|", "/")
        timing = timing if len(timing) <= MAX_CELL else timing[: MAX_CELL - 1] + "…"
        rest = ["—"] * (4 + len(ratios))
    else:
        ms = row["ms_per_step"]
        timing = f"{ms['median']:.2f} [{ms['min']:.2f}–{ms['max']:.2f}]"
        timing += f" {BUSY_MARK}" if is_unreliable(row) else ""
        peak = row["peak_memory_mb"]
        rest = [
            f"{row['steps_per_s']:.2f}",
            f"{row['graph_ms']['median']:.2f}" if row["graph_ms"] else "—",
            f"{peak:.0f}" if peak is not None else "—",
            f"{row['mean_neighbors']:.1f}" if row["mean_neighbors"] is not None else "—",
            *(f"{ratio:.2f}x" if ratio is not None else "—" for ratio in ratios),
        ]
    engine = (
        row["engine"] if row["engine"] in REFERENCE_ENGINES else f"{row['engine']} ({row['lever']})"
    )
    return [row["model_label"], row["system"], str(row["n_atoms"]), engine, timing, *rest]


HEADER = ("model", "system", "atoms", "engine", "ms/step median [min–max]", "steps/s",
          "graph ms", "peak MB", "neighbours")  # fmt: skip


def header(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column names: :data:`HEADER` plus one speed-up column per reference engine present."""
    return [*HEADER, *(f"speed-up vs {name}" for name in references_present(rows) or
                       ["mace-torch"])]  # fmt: skip


def is_unreliable(row: dict[str, Any]) -> bool:
    """A row's ``unreliable`` flag; files written before the flag existed: from ``ms_per_step``."""
    if row.get("unreliable") is not None:
        return bool(row["unreliable"])
    spread = timing_spread(row.get("ms_per_step"))
    return spread is not None and spread > SPREAD_LIMIT


def unreliable_rows(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows whose timings spread by more than :data:`SPREAD_LIMIT` (machine busy)."""
    return [row for row in payload["results"] if row["status"] == "ok" and is_unreliable(row)]


def _table_cells(payload: dict[str, Any]) -> list[list[str]]:
    rows = payload["results"]
    columns = [speedups(rows, name) for name in references_present(rows) or ["mace-torch"]]
    return [_cells(row, [column[i] for column in columns]) for i, row in enumerate(rows)]


def _footnote(payload: dict[str, Any]) -> str:
    settings, device = payload["settings"], payload["device"]
    stress = "forces + stress" if settings["stress"] else "forces (mace-torch: + stress)"
    note = (
        f"{device['kind']}: {device['name']}, {device['torch_threads']} torch threads; "
        f"{settings['dtype']}; energy + {stress}; median of {settings['repeats']} steps after "
        f"{settings['warmup']} warm-up; peak MB (MiB) = {_memory_kinds(payload['results'])}."
    )
    return note + (f"\n\n{BUSY_NOTE}." if unreliable_rows(payload) else "")


def markdown_table(payload: dict[str, Any]) -> str:
    """The results as a Markdown table, with the speed-up over mace-torch per size."""
    names = header(payload["results"])
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join(cells) + " |" for cells in _table_cells(payload)]
    return "\n".join([*lines, "", _footnote(payload)])


def text_table(payload: dict[str, Any]) -> str:
    """The same table as :func:`markdown_table`, as aligned plain text for a terminal."""
    names = header(payload["results"])
    table = [names, *_table_cells(payload)]
    widths = [max(len(row[i]) for row in table) for i in range(len(names))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join([*lines, "", _footnote(payload)])


def _memory_kinds(rows: Sequence[dict[str, Any]]) -> str:
    kinds = sorted({r["memory_kind"] for r in rows if r["memory_kind"]})
    return ", ".join(kinds) if kinds else "not measured"
