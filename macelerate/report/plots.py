"""The report's PNG figures: time and memory against system size, and force error against speed.

Figures are built on ``matplotlib.figure.Figure`` and saved through its Agg canvas, never through
``pyplot``: nothing here selects a backend, opens a window or changes matplotlib's global state,
and a figure is freed once its function returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from macelerate.atomic_io import write_atomically
from macelerate.bench.schema import MEMORY_KINDS, REFERENCE_ENGINES, BenchResult
from macelerate.report.analysis import BenchGroup, ParetoSelection

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGSIZE = (7.0, 5.0)  # inches
DPI = 150
_MARKERS = {"macelerate": "o", "mace-torch": "s", "symmetrix": "D"}
_LEGEND_INSIDE = 7  # more lines than this and the legend moves below the axes
_FAILED_BAND = 0.16  # top fraction of a log y-axis kept free for failed-run markers


@dataclass
class _Series:
    """One line: a (group, model_label, lever, engine) with its successful and failed points."""

    label: str
    color_key: tuple[str, str, str]
    engine: str
    points: list[tuple[int, float]] = field(default_factory=list)  # (atoms, value)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (atoms, status)


def _new_figure() -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    return figure, figure.add_subplot()


def _save(figure: Figure, path: Path) -> Path:
    return write_atomically(path, lambda tmp: figure.savefig(tmp, format="png", dpi=DPI))


def _colors(n: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab10" if n <= 10 else "tab20"]
    return [palette(i % palette.N) for i in range(n)]


def _group_tags(groups: Sequence[BenchGroup]) -> list[str]:
    """Short legend prefixes (``"cuda float32: "``) when several groups share a figure."""
    if len(groups) < 2:
        return [""] * len(groups)
    short = [f"{g.device.split(' ')[0]} {g.settings.split(',')[0]}" for g in groups]
    unique = len(set(short)) == len(short)
    return [f"{s if unique else g.label}: " for s, g in zip(short, groups)]


def _collect(
    groups: Sequence[BenchGroup], value: Callable[[BenchResult], float | None]
) -> list[_Series]:
    series: dict[tuple, _Series] = {}
    for tag, group in zip(_group_tags(groups), groups):
        for t in group.rows:
            row = t.row
            key = (tag, row.model_label, row.lever, row.engine)
            if key not in series:
                label = f"{tag}{row.model_label} · {row.lever} · {row.engine}"
                series[key] = _Series(label, key[:3], row.engine)
            number = value(row)
            if row.status != "ok":
                series[key].failures.append((row.n_atoms, row.status))
            elif number is not None and number > 0:
                series[key].points.append((row.n_atoms, number))
    return [s for s in series.values() if s.points or s.failures]


def _draw_series(ax: Axes, series: Sequence[_Series]) -> None:
    keys = list(dict.fromkeys(s.color_key for s in series))
    colors = dict(zip(keys, _colors(len(keys))))
    for s in series:
        reference = s.engine in REFERENCE_ENGINES
        points = sorted(s.points)
        ax.plot(
            [n for n, _ in points],
            [v for _, v in points],
            linestyle="--" if reference else "-",
            marker=_MARKERS.get(s.engine, "^"),
            markersize=5,
            linewidth=1.6,
            color=colors[s.color_key],
            label=s.label + (" (reference)" if reference else ""),
        )
    _draw_failures(ax, series, colors)


def _draw_failures(ax: Axes, series: Sequence[_Series], colors: dict) -> None:
    """An ``x`` in the series colour near the top of the axes at each failed size, labelled."""
    stacked: dict[int, int] = {}
    smallest = min(n for s in series for n, _ in [*s.points, *s.failures])
    for s in series:
        for n_atoms, status in s.failures:
            level = stacked.get(n_atoms, 0)
            stacked[n_atoms] = level + 1
            y = 0.965 - 0.04 * level
            transform = ax.get_xaxis_transform()  # x in data, y in axes fraction
            ax.plot(
                [n_atoms],
                [y],
                "x",
                color=colors[s.color_key],
                markersize=9,
                markeredgewidth=2.2,
                transform=transform,
                clip_on=False,
            )
            ax.annotate(
                "OOM" if status == "oom" else status,
                (n_atoms, y),
                xycoords=transform,
                xytext=(7, 0) if n_atoms == smallest else (-7, 0),  # keep inside the axes
                textcoords="offset points",
                ha="left" if n_atoms == smallest else "right",
                va="center",
                fontsize=7,
                color=colors[s.color_key],
            )
    if stacked:
        ax.plot([], [], "x", color="black", markeredgewidth=2.2, label="run failed at this size")


def _finish_log_axes(ax: Axes, series: Sequence[_Series], *, ylabel: str, title: str) -> None:
    values = [v for s in series for _, v in s.points]
    ax.set_xscale("log")
    ax.set_yscale("log")
    if values:
        low, high = min(values) / 1.5, max(values) * 1.5
    else:
        low, high = 1.0, 10.0
    if high / low < 10:  # at least a decade, so the log axis shows a labelled power of ten
        widen = (10 * low / high) ** 0.5
        low, high = low / widen, high * widen
    if any(s.failures for s in series):  # keep a band at the top free for the failure marks
        high = high * (high / low) ** (_FAILED_BAND / (1 - _FAILED_BAND))
    ax.set_ylim(low, high)
    ax.set_xlabel("system size (atoms)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    if len(series) <= _LEGEND_INSIDE:
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
    else:  # a long legend goes below the axes rather than over the lines
        ax.figure.legend(fontsize=7, loc="outside lower center", ncols=2, frameon=False)


def _subtitle(groups: Sequence[BenchGroup]) -> str:
    return groups[0].label if len(groups) == 1 else f"{len(groups)} devices/settings"


def plot_time_vs_atoms(groups: Sequence[BenchGroup], path: str | Path) -> Path | None:
    """Median time per step (ms, log) against atoms (log); ``None`` (nothing written) if no rows.

    One line per (model_label, lever, engine), reference engines dashed; failed runs are
    marked with an ``x`` at the top of the axes.
    """
    series = _collect(groups, lambda row: row.ms_median)
    if not series:
        return None
    figure, ax = _new_figure()
    _draw_series(ax, series)
    title = f"Time per step against system size\n{_subtitle(groups)}"
    _finish_log_axes(ax, series, ylabel="time per step (ms, median)", title=title)
    return _save(figure, Path(path))


def plot_memory_vs_atoms(groups: Sequence[BenchGroup], path: str | Path) -> Path | None:
    """Peak memory (MB) against atoms, log-log; ``None`` (nothing written) if none was measured."""
    series = _collect(groups, lambda row: row.peak_memory_mb)
    if not any(s.points for s in series):
        return None
    kinds = {t.row.memory_kind for g in groups for t in g.rows if t.row.peak_memory_mb}
    kind = " / ".join(MEMORY_KINDS.get(k, k) for k in sorted(k or "unknown kind" for k in kinds))
    figure, ax = _new_figure()
    _draw_series(ax, series)
    title = f"Peak memory against system size\n{_subtitle(groups)}"
    _finish_log_axes(ax, series, ylabel=f"peak memory (MB, {kind})", title=title)
    return _save(figure, Path(path))


def plot_pareto(selection: ParetoSelection, path: str | Path) -> Path:
    """Force RMSE (meV/Å) against speed (steps/s), one labelled point per (model_label, lever).

    Non-dominated points are drawn in red and joined in order of speed.
    """
    figure, ax = _new_figure()
    front = sorted((p for p in selection.points if p.on_front), key=lambda p: p.steps_per_s)
    rest = [p for p in selection.points if not p.on_front]
    ax.plot(
        [p.steps_per_s for p in front],
        [p.force_rmse for p in front],
        "-o",
        color="tab:red",
        markersize=8,
        linewidth=1.5,
        label="Pareto front (not dominated)",
        zorder=3,
    )
    if rest:
        ax.plot(
            [p.steps_per_s for p in rest],
            [p.force_rmse for p in rest],
            "o",
            color="tab:gray",
            markersize=7,
            label="dominated",
            zorder=3,
        )
    for p in selection.points:  # front labels below the front, where no point can lie
        engine = "" if p.engine == "macelerate" else f" [{p.engine}]"
        offset, va = ((0, -9), "top") if p.on_front else ((0, 9), "bottom")
        ax.annotate(
            f"{p.model_label}\n{p.lever}{engine}",
            (p.steps_per_s, p.force_rmse),
            xytext=offset,
            textcoords="offset points",
            ha="center",
            va=va,
            fontsize=8,
        )
    speeds = [p.steps_per_s for p in selection.points]
    if max(speeds) > 10 * min(speeds):
        ax.set_xscale("log")
    ax.margins(x=0.2, y=0.2)
    arrow = {"arrowstyle": "->", "color": "tab:green"}
    ax.annotate(
        "better",
        xy=(0.97, 0.04),
        xytext=(0.80, 0.16),
        xycoords="axes fraction",
        fontsize=8,
        color="tab:green",
        arrowprops=arrow,
    )
    ax.set_xlabel(f"speed (steps/s at {selection.n_atoms} atoms, higher is better)")
    ax.set_ylabel("force RMSE (meV/Å, lower is better)")
    ax.set_title(
        f"Force error against speed at {selection.n_atoms} atoms ({selection.how})\n"
        f"{selection.group}",
        fontsize=10,
    )
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)
    return _save(figure, Path(path))
