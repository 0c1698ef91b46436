"""``build_report``: read result files, analyse them, write ``report.md`` plus the plots.

The analysis lives in :mod:`macelerate.report.analysis`; :mod:`macelerate.report.markdown` and
:mod:`macelerate.report.plots` render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from macelerate.atomic_io import write_atomically
from macelerate.report.analysis import ReportOptionError, group_bench, select_pareto
from macelerate.report.loading import load_results
from macelerate.report.markdown import render_markdown
from macelerate.report.plots import plot_memory_vs_atoms, plot_pareto, plot_time_vs_atoms

__all__ = ["ReportOptionError", "ReportResult", "build_report"]


@dataclass(frozen=True)
class ReportResult:
    """What ``build_report`` wrote."""

    markdown_path: Path
    plot_paths: tuple[Path, ...]


def build_report(
    paths: Sequence[str | Path], *, out_dir: str | Path, pareto_atoms: int | None = None
) -> ReportResult:
    """Read result files and write ``report.md`` and the PNG plots into ``out_dir``.

    Args:
        paths: bench (``macelerate-bench/1``) and eval (``macelerate-eval/1``) JSON files.
        out_dir: created if needed; earlier plots of ours that this run does not redraw are removed
            so the folder never shows a stale figure.
        pareto_atoms: system size (atoms) the Pareto speeds are taken at; default the largest size
            all points share.

    Raises:
        ResultFileError: a file is not a valid bench or eval results file.
        ReportOptionError: ``pareto_atoms`` matches no measured point, or no paths are given.
    """
    if not paths:
        raise ReportOptionError("no result files given; pass bench and/or eval JSON files")
    results = load_results(paths)
    groups = group_bench(results.bench)
    pareto = select_pareto(groups, results.evals, n_atoms=pareto_atoms)
    out = Path(out_dir)
    written = {
        "time_vs_atoms.png": plot_time_vs_atoms(groups, out / "time_vs_atoms.png"),
        "memory_vs_atoms.png": plot_memory_vs_atoms(groups, out / "memory_vs_atoms.png"),
        "pareto.png": plot_pareto(pareto, out / "pareto.png") if pareto.points else None,
    }
    for name, path in written.items():
        if path is None:
            (out / name).unlink(missing_ok=True)
    text = render_markdown(
        results, groups, pareto, plots={k: v is not None for k, v in written.items()}
    )
    markdown_path = write_atomically(out / "report.md", lambda tmp: tmp.write_text(text))
    return ReportResult(markdown_path, tuple(p for p in written.values() if p is not None))
