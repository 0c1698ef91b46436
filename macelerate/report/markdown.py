"""``report.md``: provenance, speed tables, failures, accuracy tables and the figures' links."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from macelerate.bench.schema import MEMORY_KINDS
from macelerate.report.analysis import BenchGroup, ParetoSelection, Speedup, TableRow
from macelerate.report.loading import EvalFile, LoadedResults

FIGURES = {
    "time_vs_atoms.png": "Time per step against system size",
    "memory_vs_atoms.png": "Peak memory against system size",
    "pareto.png": "Force error against speed",
}


def _cell(value: object) -> str:
    """A table cell: ``-`` for missing values, pipes escaped, whitespace on one line."""
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split()).replace("|", "\\|")


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _versions(versions: Mapping[str, object]) -> str:
    return ", ".join(f"{name} {version}" for name, version in versions.items())


def _provenance(results: LoadedResults) -> list[str]:
    lines = ["## Inputs", ""]
    if results.bench:
        header = ["bench file", "date (UTC)", "device", "settings", "versions", "command"]
        rows = [
            [f"`{b.path}`", b.date_utc, b.device_label, b.settings_label, _versions(b.versions)]
            + [f"`{b.command}`" if b.command else None]
            for b in results.bench
        ]
        lines += _table(header, rows)
    if results.evals:
        header = [
            "eval file",
            "model",
            "lever",
            "data",
            "dtype",
            "against",
            "date (UTC)",
            "command",
        ]
        rows = [
            [f"`{e.path}`", f"`{e.model}`", e.lever, f"`{e.data}`", e.dtype, e.against]
            + [e.date_utc, f"`{e.command}`" if e.command else None]
            for e in results.evals
        ]
        lines += _table(header, rows)
    return lines


def _speedup(t: TableRow, speedup: Speedup) -> str:
    if t.row.status != "ok":
        return "-"
    if t.row.engine == speedup.engine and speedup.ratio is not None:
        return "reference"
    if speedup.reference_status in ("oom", "error"):
        return f"{speedup.engine} {speedup.reference_status.replace('oom', 'OOM')}"
    return "-" if speedup.ratio is None else f"{speedup.ratio:.2f}×"


def _timing(t: TableRow) -> str:
    r = t.row
    if r.ms_median is None:
        return "-"
    spread = f" ({r.ms_min:.2f}–{r.ms_max:.2f})" if r.ms_min is not None and r.ms_max else ""
    return f"{r.ms_median:.2f}{spread}"


def _speed_group(group: BenchGroup) -> list[str]:
    lines = [f"### {group.label}", ""]
    lines += [f"From {', '.join(f'`{f.path}`' for f in group.files)}.", ""]
    header = ["model", "lever", "engine", "system", "atoms", "ms/step median (min–max)"]
    header += ["steps/s", *(f"speed-up vs {name}" for name in group.references)]
    header += ["peak memory (MB)"]
    header += ["mean neighbours", "edges", "graph ms", "status"]
    rows = [
        [t.row.model_label, t.row.lever, t.row.engine, t.row.system, t.row.n_atoms, _timing(t)]
        + [_num(t.row.steps_per_s), *(_speedup(t, s) for s in t.speedups)]
        + [_num(t.row.peak_memory_mb, 1)]
        + [_num(t.row.mean_neighbors, 1), t.row.n_edges, _num(t.row.graph_ms_median)]
        + [t.row.status]
        for t in group.rows
    ]
    lines += _table(header, rows)
    kinds = sorted({MEMORY_KINDS.get(k, k) for t in group.rows if (k := t.row.memory_kind)})
    lines += [
        f"Speed-up vs {', '.join(f'`{name}`' for name in group.references)}: that engine's "
        "median ms/step on the same model, system and size in this table ÷ the row's median. "
        f"Peak memory: {', '.join(kinds) or 'not measured'}.",
        "",
    ]
    return lines


def _failures(groups: Sequence[BenchGroup]) -> list[str]:
    failed = [(g, t) for g in groups for t in g.rows if t.row.status != "ok"]
    lines = ["## Failed runs", ""]
    if not failed:
        return lines + ["None: every bench run finished.", ""]
    lines += [f"{len(failed)} bench run(s) did not finish; the figures mark them with an x.", ""]
    header = ["device · settings", "model", "lever", "engine", "system", "atoms", "status", "error"]
    rows = [
        [g.label, t.row.model_label, t.row.lever, t.row.engine, t.row.system, t.row.n_atoms]
        + [t.row.status.upper() if t.row.status == "oom" else t.row.status, t.row.error]
        for g, t in failed
    ]
    return lines + _table(header, rows)


def _accuracy(evals: Sequence[EvalFile]) -> list[str]:
    lines = ["## Accuracy", ""]
    if not evals:
        return lines + ["No eval files given.", ""]
    header = ["model", "lever", "dtype", "data", "against", "structures", "atoms"]
    header += ["energy MAE", "energy RMSE (meV/atom)", "force MAE", "force RMSE (meV/Å)"]
    header += ["stress MAE", "stress RMSE (meV/Å³)"]
    rows = [
        [e.model_label, e.lever, e.dtype, f"`{e.data}`", e.against or "data labels"]
        + [e.n_structures, e.n_atoms, _num(e.energy_mae), _num(e.energy_rmse)]
        + [_num(e.force_mae), _num(e.force_rmse), _num(e.stress_mae), _num(e.stress_rmse)]
        for e in evals
    ]
    lines += _table(header, rows)
    symbols = sorted({s for e in evals for s in e.per_element}, key=_atomic_number)
    if symbols:
        lines += ["### Force RMSE per element (meV/Å)", ""]
        header = ["model", "lever", "data", *symbols]
        per_element = [
            [e.model_label, e.lever, f"`{e.data}`"]
            + [_num(e.per_element.get(s, {}).get("force_rmse")) for s in symbols]
            for e in evals
        ]
        lines += _table(header, per_element)
    return lines


def _atomic_number(symbol: str) -> tuple[int, str]:
    from ase.data import atomic_numbers

    return atomic_numbers.get(symbol, 999), symbol


def _pareto(selection: ParetoSelection, drawn: bool) -> list[str]:
    lines = ["## Accuracy against speed", ""]
    if not drawn:
        return lines + [f"No `pareto.png`: {'; '.join(selection.notes)}.", ""]
    lines += [
        f"Speed at {selection.n_atoms} atoms ({selection.how}) on {selection.group}; force RMSE "
        "from the eval files (errors against data labels preferred over errors against a model).",
        "",
    ]
    header = ["model", "lever", "engine", f"steps/s at {selection.n_atoms} atoms"]
    header += ["force RMSE (meV/Å)", "Pareto front", "eval file"]
    points = sorted(selection.points, key=lambda p: -p.steps_per_s)
    rows = [
        [p.model_label, p.lever, p.engine, _num(p.steps_per_s), _num(p.force_rmse)]
        + ["yes" if p.on_front else "no", f"`{p.eval_path}`"]
        for p in points
    ]
    lines += _table(header, rows)
    if selection.notes:
        lines += ["Left out of the figure:", ""] + [f"- {note}" for note in selection.notes] + [""]
    return lines + [f"![{FIGURES['pareto.png']}](pareto.png)", ""]


def render_markdown(
    results: LoadedResults,
    groups: Sequence[BenchGroup],
    pareto: ParetoSelection,
    *,
    plots: Mapping[str, bool],
) -> str:
    """The whole ``report.md`` text; ``plots`` says which PNG (by file name) was written."""
    lines = ["# macelerate report", ""]
    lines += [f"{len(results.bench)} bench file(s), {len(results.evals)} eval file(s).", ""]
    lines += _provenance(results)
    lines += ["## Speed and memory", ""]
    if not groups:
        lines += ["No bench files given.", ""]
    for group in groups:
        lines += _speed_group(group)
    for name in ("time_vs_atoms.png", "memory_vs_atoms.png"):
        if plots.get(name):
            lines += [f"![{FIGURES[name]}]({name})", ""]
    lines += _failures(groups)
    lines += _accuracy(results.evals)
    lines += _pareto(pareto, bool(plots.get("pareto.png")))
    lines += ["## Figures", ""]
    missing = {
        "time_vs_atoms.png": "no bench rows",
        "memory_vs_atoms.png": "no bench row recorded peak memory",
        "pareto.png": "; ".join(pareto.notes),
    }
    for name, title in FIGURES.items():
        if plots.get(name):
            lines.append(f"- [`{name}`]({name}): {title.lower()}")
        else:
            lines.append(f"- `{name}` not drawn: {missing[name]}")
    return "\n".join(lines) + "\n"
