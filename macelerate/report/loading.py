"""Read and validate the JSON files ``macelerate bench`` and ``macelerate eval`` write.

Each file names its format in a ``"schema"`` key; see the bench and eval JSON contracts:
``macelerate-bench/1`` (timings per model, lever, engine and system; rows are read into the
bench's own :class:`~macelerate.bench.schema.BenchResult`) and ``macelerate-eval/1``
(energy/force/stress errors of one model and lever on one data file). Keys the contracts list
but a file lacks are read as ``None`` (or computed, where ``SCHEMA.md`` says how); the keys the
report cannot do without are required.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from macelerate.bench.schema import SCHEMA as BENCH_SCHEMA
from macelerate.bench.schema import SPREAD_LIMIT, STATUSES, BenchResult, timing_spread
from macelerate.errors import MacelerateError

EVAL_SCHEMA = "macelerate-eval/1"
TIMING_KEYS = ("median", "min", "max")
_EXPECTED = (
    f"expected schema {BENCH_SCHEMA!r} (from `macelerate bench --json`) "
    f"or {EVAL_SCHEMA!r} (from `macelerate eval --json`)"
)


class ResultFileError(MacelerateError, ValueError):
    """A file given to ``macelerate report`` that is not a bench or eval results file."""


@dataclass(frozen=True)
class BenchFile:
    """A ``macelerate-bench/1`` file: provenance plus its rows in file order."""

    path: Path
    command: str | None
    date_utc: str | None
    device: Mapping[str, Any]
    versions: Mapping[str, Any]
    settings: Mapping[str, Any]
    rows: tuple[BenchResult, ...]

    @property
    def device_label(self) -> str:
        """``"cuda NVIDIA H100"`` or ``"cpu (2 cores, 2 threads)"``."""
        kind = str(self.device.get("kind", "?"))
        name = self.device.get("name")
        label = f"{kind} {name}" if name and name != kind else kind
        if kind == "cpu" and self.device.get("cores"):
            label += f" ({self.device['cores']} cores, {self.device.get('torch_threads')} threads)"
        return label

    @property
    def settings_label(self) -> str:
        """``"float64, 20 repeats, 3 warm-up"``."""
        parts = [str(self.settings.get("dtype", "?"))]
        if self.settings.get("repeats") is not None:
            parts.append(f"{self.settings['repeats']} repeats")
        if self.settings.get("warmup") is not None:
            parts.append(f"{self.settings['warmup']} warm-up")
        return ", ".join(parts)


@dataclass(frozen=True)
class EvalFile:
    """A ``macelerate-eval/1`` file. Energies in meV/atom, forces in meV/Å, stress in meV/Å³.

    ``per_element`` maps a symbol to ``{"force_mae", "force_rmse", "n_atoms"}``; ``against`` is
    the reference model path when errors were taken against a model rather than data labels.
    """

    path: Path
    model: str
    model_label: str
    lever: str
    data: str
    dtype: str | None = None
    against: str | None = None
    n_structures: int | None = None
    n_atoms: int | None = None
    energy_mae: float | None = None
    energy_rmse: float | None = None
    force_mae: float | None = None
    force_rmse: float | None = None
    stress_mae: float | None = None
    stress_rmse: float | None = None
    per_element: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    command: str | None = None
    date_utc: str | None = None


@dataclass(frozen=True)
class LoadedResults:
    """All inputs of a report, each kind in the order given."""

    bench: tuple[BenchFile, ...]
    evals: tuple[EvalFile, ...]


def load_results(paths: Sequence[str | Path]) -> LoadedResults:
    """Read every file in ``paths`` and sort it by its schema.

    Raises:
        ResultFileError: a file is missing, not JSON, has another schema, or lacks a needed key.
    """
    bench: list[BenchFile] = []
    evals: list[EvalFile] = []
    for path in map(Path, paths):
        payload = _read_json(path)
        schema = payload.get("schema")
        if schema == BENCH_SCHEMA:
            bench.append(_bench_file(path, payload))
        elif schema == EVAL_SCHEMA:
            evals.append(_eval_file(path, payload))
        elif schema is None:
            raise ResultFileError(f"{path} has no 'schema' key; {_EXPECTED}")
        else:
            raise ResultFileError(f"{path} has schema {schema!r}; {_EXPECTED}")
    return LoadedResults(bench=tuple(bench), evals=tuple(evals))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as error:
        raise ResultFileError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultFileError(f"{path} is not JSON ({error}); {_EXPECTED}") from error
    if not isinstance(payload, dict):
        raise ResultFileError(f"{path} holds a JSON {type(payload).__name__}; {_EXPECTED}")
    return payload


def _require(payload: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str):
    if key not in payload:
        raise ResultFileError(f"{where} lacks the key {key!r}; was it written by macelerate?")
    return _typed(payload[key], kind, f"{where} key {key!r}")


def _optional(payload: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str):
    value = payload.get(key)
    return None if value is None else _typed(value, kind, f"{where} key {key!r}")


def _typed(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    numeric = kind is int or kind == (int, float)
    if (numeric and isinstance(value, bool)) or not isinstance(value, kind):
        raise ResultFileError(f"{where} is {value!r}, not {_kind_name(kind)}")
    if kind == (int, float) and isinstance(value, int | float):
        return float(value)
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        dict: "an object",
        list: "a list",
        bool: "true or false",
    }
    return "a number" if kind == (int, float) else names.get(kind, str(kind))  # type: ignore[arg-type]


def _timing(row: Mapping[str, Any], key: str, where: str) -> dict[str, float] | None:
    """``{"median", "min", "max"}`` ms of ``row[key]`` (the keys present), or None."""
    timing = _optional(row, key, dict, where)
    if timing is None:
        return None
    values = {k: _optional(timing, k, (int, float), f"{where} {key}") for k in TIMING_KEYS}
    return {k: v for k, v in values.items() if v is not None} or None


def _bench_row(row: Any, where: str) -> BenchResult:
    row = _typed(row, dict, where)
    status = _require(row, "status", str, where)
    if status not in STATUSES:
        raise ResultFileError(f"{where} has status {status!r}; expected one of {STATUSES}")
    ms = _timing(row, "ms_per_step", where)
    ms_median = None if ms is None else ms.get("median")
    if status == "ok" and ms_median is None:
        raise ResultFileError(f"{where} has status 'ok' but no ms_per_step median")
    steps = _optional(row, "steps_per_s", (int, float), where)
    spread = _optional(row, "ms_spread", (int, float), where)
    spread = timing_spread(ms) if spread is None else spread
    unreliable = _optional(row, "unreliable", bool, where)
    if unreliable is None and spread is not None:
        unreliable = spread > SPREAD_LIMIT
    return BenchResult(
        model=str(row.get("model", "")),
        model_label=_require(row, "model_label", str, where),
        engine=_require(row, "engine", str, where),
        lever=_require(row, "lever", str, where),
        system=_require(row, "system", str, where),
        n_atoms=_require(row, "n_atoms", int, where),
        status=status,
        error=_optional(row, "error", str, where),
        n_edges=_optional(row, "n_edges", int, where),
        mean_neighbors=_optional(row, "mean_neighbors", (int, float), where),
        ms_per_step=ms,
        steps_per_s=steps if steps is not None or ms_median is None else 1000.0 / ms_median,
        graph_ms=_timing(row, "graph_ms", where),
        peak_memory_mb=_optional(row, "peak_memory_mb", (int, float), where),
        memory_kind=_optional(row, "memory_kind", str, where),
        ms_spread=spread,
        unreliable=unreliable,
    )


def _bench_file(path: Path, payload: Mapping[str, Any]) -> BenchFile:
    rows = _require(payload, "results", list, str(path))
    return BenchFile(
        path=path,
        command=_optional(payload, "command", str, str(path)),
        date_utc=_optional(payload, "date_utc", str, str(path)),
        device=_optional(payload, "device", dict, str(path)) or {},
        versions=_optional(payload, "versions", dict, str(path)) or {},
        settings=_optional(payload, "settings", dict, str(path)) or {},
        rows=tuple(_bench_row(row, f"{path} results[{i}]") for i, row in enumerate(rows)),
    )


def _per_element(payload: Mapping[str, Any], where: str) -> dict[str, dict[str, float]]:
    table = _optional(payload, "per_element", dict, where) or {}
    return {
        str(symbol): {
            k: float(v)
            for k, v in _typed(values, dict, f"{where} per_element[{symbol!r}]").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for symbol, values in table.items()
    }


def _eval_file(path: Path, payload: Mapping[str, Any]) -> EvalFile:
    where = str(path)
    numbers = {
        key: _optional(payload, key, (int, float), where)
        for key in ("energy_mae", "energy_rmse", "force_mae", "force_rmse")
        + ("stress_mae", "stress_rmse")
    }
    return EvalFile(
        path=path,
        model=_require(payload, "model", str, where),
        model_label=_require(payload, "model_label", str, where),
        lever=_require(payload, "lever", str, where),
        data=_require(payload, "data", str, where),
        dtype=_optional(payload, "dtype", str, where),
        against=_optional(payload, "against", str, where),
        n_structures=_optional(payload, "n_structures", int, where),
        n_atoms=_optional(payload, "n_atoms", int, where),
        per_element=_per_element(payload, where),
        command=_optional(payload, "command", str, where),
        date_utc=_optional(payload, "date_utc", str, where),
        **numbers,
    )
