"""The report card of one ``macelerate compress`` run: ``report.md`` and its figures, from JSON.

:func:`write_report_card` reads nothing but the run's JSON-safe summary (the ``validation`` entry
is :meth:`~macelerate.pipeline.validation.StudentValidation.to_dict`, whose ``series`` holds the
plotted data), so a report can be rebuilt from ``summary.json`` alone. Figures (written only when
their data is there):

- ``parity.png``: student against teacher forces on the held-out test set, and all models against
  the reference labels when given;
- ``per_element.png``: force RMSE per element (teacher and student against the reference when
  given, else the student against the teacher);
- ``nve.png``: total energy of the NVE runs, meV/atom relative to the start, against ps;
- ``rdf.png``: pair-distance distributions of the teacher's and the student's Langevin runs;
- ``speed.png``: ms per energy+forces step of the teacher and every ladder candidate.

Each file is written atomically (:func:`~macelerate.atomic_io.write_atomically`), figures first,
``report.md`` last. Figures use matplotlib's ``Figure`` + Agg canvas, never ``pyplot``.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from macelerate._version import __version__
from macelerate.atomic_io import write_atomically
from macelerate.errors import MacelerateError
from macelerate.report.markdown import _num, _table
from macelerate.report.plots import DPI, FIGSIZE, _save

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURES = {
    "parity.png": "Force parity",
    "per_element.png": "Force RMSE per element",
    "nve.png": "NVE total energy",
    "rdf.png": "Pair-distance distribution of Langevin MD",
    "speed.png": "Time per step of the teacher and the ladder",
}
TEACHER, STUDENT, CHOSEN = "tab:gray", "tab:blue", "tab:red"
LABEL_BOX = {"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none"}


class ReportCardError(MacelerateError, ValueError):
    """A summary the report card cannot be written from."""


def _figure(ncols: int = 1) -> tuple[Figure, list[Axes]]:
    from matplotlib.figure import Figure

    width, height = FIGSIZE
    figure = Figure(figsize=(width * (0.75 if ncols > 1 else 1) * ncols, height), dpi=DPI,
                    layout="constrained")  # fmt: skip
    return figure, [figure.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _array(values: Sequence[float | None] | None) -> np.ndarray:
    """A float array of JSON values (None -> NaN)."""
    return np.array([np.nan if v is None else v for v in values or []], dtype=np.float64)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(1e3 * np.sqrt(np.nanmean((a - b) ** 2)))


def _parity_panel(ax: Axes, x: np.ndarray, ys: Mapping[str, tuple[np.ndarray, str]],
                  *, xlabel: str, title: str) -> None:  # fmt: skip
    finite = np.concatenate([x, *(y for y, _ in ys.values())])
    finite = finite[np.isfinite(finite)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    ax.plot([low, high], [low, high], "--", color="black", linewidth=0.8, label="y = x")
    for name, (y, color) in ys.items():
        label = f"{name} (RMSE {_rmse(y, x):.1f} meV/Å, shown points)"
        ax.plot(x, y, ".", markersize=2.5, alpha=0.5, color=color, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("predicted force component (eV/Å)")
    ax.set_title(title, fontsize=10)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=7, loc="upper left", markerscale=3, framealpha=0.9)


def plot_parity(series: Mapping[str, Any], path: Path) -> Path | None:
    """Force parity: student against teacher on the test set (and against the reference)."""
    test, reference = series.get("parity_test"), series.get("parity_reference")
    if not test:
        return None
    figure, axes = _figure(2 if reference else 1)
    student = _array(test["student_forces_ev_per_a"])
    _parity_panel(axes[0], _array(test["teacher_forces_ev_per_a"]), {"student": (student, STUDENT)},
                  xlabel="teacher force component (eV/Å)",
                  title="Student against teacher (held-out test)")  # fmt: skip
    if reference:
        ys = {name: (_array(reference[f"{name}_forces_ev_per_a"]), color)
              for name, color in (("teacher", TEACHER), ("student", STUDENT))}  # fmt: skip
        _parity_panel(axes[1], _array(reference["reference_forces_ev_per_a"]), ys,
                      xlabel="reference force component (eV/Å)",
                      title="Teacher and student against the reference")  # fmt: skip
    return _save(figure, path)


def plot_per_element(validation: Mapping[str, Any], path: Path) -> Path | None:
    """Grouped bars of per-element force RMSE (meV/Å)."""
    teacher_ref = validation.get("teacher_vs_reference")
    student_ref = validation.get("student_vs_reference")
    key = "per_element_force_rmse_mev_per_a"
    if teacher_ref and student_ref:
        bars = {"teacher vs reference": (teacher_ref[key], TEACHER),
                "student vs reference": (student_ref[key], STUDENT)}  # fmt: skip
    else:
        bars = {"student vs teacher": ((validation.get("vs_teacher") or {}).get(key), STUDENT)}
    symbols = list(dict.fromkeys(s for values, _ in bars.values() for s in (values or {})))
    if not symbols:
        return None
    figure, (ax,) = _figure()
    width = 0.8 / len(bars)
    positions = np.arange(len(symbols))
    for i, (label, (values, color)) in enumerate(bars.items()):
        heights = _array([(values or {}).get(s) for s in symbols])
        ax.bar(positions + (i - (len(bars) - 1) / 2) * width, heights, width, label=label,
               color=color)  # fmt: skip
    ax.set_xticks(positions, symbols)
    ax.set_ylabel("force RMSE (meV/Å)")
    ax.set_title("Force RMSE per element", fontsize=10)
    ax.grid(True, axis="y", alpha=0.35)
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_nve(validation: Mapping[str, Any], path: Path) -> Path | None:
    """Total energy (meV/atom, relative to the start) against time (ps) of both NVE runs."""
    traces = (validation.get("series") or {}).get("nve") or {}
    if not any((traces.get(name) or {}).get("time_ps") for name in ("teacher", "student")):
        return None
    figure, (ax,) = _figure()
    for name, color in (("teacher", TEACHER), ("student", STUDENT)):
        trace = traces.get(name) or {}
        time_ps = _array(trace.get("time_ps"))
        energy = _array(trace.get("total_energy_mev_per_atom"))  # relative to the start
        summary = validation.get(f"nve_{name}") or {}
        failed = bool(summary.get("problem"))
        drift = summary.get("drift_mev_per_atom_ps")
        note = "blew up" if failed else f"drift {_num(drift, 3)} meV/atom/ps"
        ax.plot(time_ps, energy, "-", color=color, linewidth=1.5, label=f"{name} ({note})")
        if failed and time_ps.size:
            ax.plot(time_ps[-1:], energy[-1:], "x", color=color, markersize=9, markeredgewidth=2)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("E_total - E_total(0) (meV/atom)")
    ax.set_title("NVE total energy (velocity Verlet)", fontsize=10)
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8)
    return _save(figure, path)


def plot_rdf(validation: Mapping[str, Any], path: Path) -> Path | None:
    """The teacher's and the student's pair-distance distributions, overlaid."""
    curves = (validation.get("series") or {}).get("rdf") or {}
    if not curves.get("r_a"):
        return None
    figure, (ax,) = _figure()
    r = _array(curves["r_a"])
    for name, color, style in (("teacher", TEACHER, "-"), ("student", STUDENT, "--")):
        if curves.get(name) is not None:
            ax.plot(r, _array(curves[name]), style, color=color, linewidth=1.5, label=name)
    kind = curves.get("kind", "g(r)")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("g(r)" if kind == "g(r)" else "pair-distance density (neighbours / atom / Å)")
    distance = (validation.get("rdf") or {}).get("distance")
    ax.set_title(f"{kind} of Langevin MD (distance {_num(distance, 3)})", fontsize=10)
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8)
    return _save(figure, path)


def teacher_ms(summary: Mapping[str, Any]) -> float | None:
    """The teacher's ms/step: as the summary states it, from the ladder, or from validation."""
    stated = (summary.get("teacher") or {}).get("ms_per_step")
    if stated is not None:
        return float(stated)
    for row in summary.get("ladder") or []:
        if row.get("ms_per_step") and row.get("speedup"):
            return float(row["ms_per_step"]) * float(row["speedup"])
    speed = (summary.get("validation") or {}).get("speed") or {}
    return speed.get("teacher_ms")


def plot_speed(summary: Mapping[str, Any], path: Path) -> Path | None:
    """Bars of ms/step: the teacher and every ladder candidate, the chosen one highlighted."""
    rows = [r for r in summary.get("ladder") or [] if r.get("ms_per_step") is not None]
    reference_ms = teacher_ms(summary)
    if not rows:
        return None
    names = ["teacher", *(str(r["name"]) for r in rows)]
    values = [reference_ms, *(float(r["ms_per_step"]) for r in rows)]
    colors = [TEACHER, *(CHOSEN if r["name"] == summary.get("chosen") else STUDENT for r in rows)]
    figure, (ax,) = _figure()
    bars = ax.bar(names, _array(values), color=colors)
    for bar, value in zip(bars, values):
        if value and reference_ms:
            where = (bar.get_x() + bar.get_width() / 2, value)
            ax.annotate(f"{reference_ms / value:.1f}×", where, ha="center", va="bottom",
                        fontsize=8, zorder=4, bbox=LABEL_BOX)  # fmt: skip
    target = (summary.get("target") or {}).get("speedup")
    if target and reference_ms:
        ax.axhline(reference_ms / float(target), linestyle="--", color="black", linewidth=1,
                   label=f"target speed-up {target}×")  # fmt: skip
        ax.legend(fontsize=8)
    ax.set_ylabel("ms per energy+forces step (lower is faster)")
    ax.set_title(f"Teacher and ladder (chosen in red) on {_structure(summary)}", fontsize=10)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    ax.grid(True, axis="y", alpha=0.35)
    return _save(figure, path)


def _structure(summary: Mapping[str, Any]) -> str:
    structure = summary.get("structure") or {}
    return f"{structure.get('formula', '?')} ({structure.get('n_atoms', '?')} atoms)"


def _targets(summary: Mapping[str, Any]) -> list[str]:
    """Targets against measured values: the summary's ``checks`` if given, else derived."""
    checks = summary.get("checks")
    if not checks:
        validation = summary.get("validation") or {}
        measured = {
            "speedup": (validation.get("speed") or {}).get("speedup"),
            "max_force_error_ratio": validation.get("force_error_ratio"),
            "max_force_rmse_mev": (validation.get("vs_teacher") or {}).get("force_rmse_mev_per_a"),
        }
        checks = {}
        for name, wanted in (summary.get("target") or {}).items():
            value = measured.get(name)
            met = None
            if wanted is not None and value is not None:
                met = value >= wanted if name == "speedup" else value <= wanted
            checks[name] = {"target": wanted, "measured": value, "met": met}
    rows = [[name, _value(c.get("target")), _value(c.get("measured")), _value(c.get("met"))]
            for name, c in checks.items()]  # fmt: skip
    note = ("Measured in validation on held-out data: speed-up interleaved with the teacher in one "
            "process; force error ratio = student / teacher force RMSE against the reference; "
            "force RMSE of the student against the teacher's labels.")  # fmt: skip
    return ["## Targets", ""] + _table(["target", "wanted", "measured", "met"], rows) + [note, ""]


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return "-" if value is None else str(value)


ARCHITECTURE_FIELDS = ("channels", "max_L", "max_ell", "correlation", "num_interactions", "r_max",
                       "max_neighbors", "smooth_cap", "direct_forces")  # fmt: skip
"""The StudentConfig fields the ladder table shows (the rest are the teacher's constants)."""


def _architecture(architecture: Any) -> str:
    if not isinstance(architecture, Mapping):
        return _value(architecture)
    shown = {k: architecture[k] for k in ARCHITECTURE_FIELDS if k in architecture}
    return _value(shown or architecture)


def _ladder(summary: Mapping[str, Any]) -> list[str]:
    header = ["name", "architecture", "ms/step", "speed-up", "trained",
              "val force RMSE (meV/Å)", "meets speed", "meets accuracy", "chosen"]  # fmt: skip
    rows = [[r.get("name"), _architecture(r.get("architecture")), _num(r.get("ms_per_step")),
             _num(r.get("speedup")), _value(r.get("trained")), _num(r.get("val_forces_rmse_mev")),
             _value(r.get("meets_speed")), _value(r.get("meets_accuracy")),
             "yes" if r.get("name") == summary.get("chosen") else ""]
            for r in summary.get("ladder") or []]  # fmt: skip
    lines = ["## Ladder", "", f"Teacher: {_num(teacher_ms(summary))} ms/step.", ""]
    return lines + _table(header, rows)


def _accuracy(v: Mapping[str, Any]) -> list[str]:
    header = ["comparison", "structures", "E RMSE (meV/atom)", "E MAE (meV/atom)",
              "F RMSE (meV/Å)", "F MAE (meV/Å)", "stress RMSE (meV/Å³)"]  # fmt: skip
    comparisons = {"student vs teacher (held-out test)": v.get("vs_teacher"),
                   "teacher vs reference": v.get("teacher_vs_reference"),
                   "student vs reference": v.get("student_vs_reference")}  # fmt: skip
    rows = [[name, e["n_structures"], _num(e["energy_rmse_mev_per_atom"]),
             _num(e["energy_mae_mev_per_atom"]), _num(e["force_rmse_mev_per_a"]),
             _num(e["force_mae_mev_per_a"]), _num(e["stress_rmse_mev_per_a3"])]
            for name, e in comparisons.items() if e]  # fmt: skip
    lines = ["### Accuracy", ""] + _table(header, rows)
    if v.get("force_error_ratio") is not None:
        lines += [f"Force error ratio (student / teacher RMSE vs reference): "
                  f"{v['force_error_ratio']:.3f}.", ""]  # fmt: skip
    per_element = {name: (e or {}).get("per_element_force_rmse_mev_per_a") or {}
                   for name, e in comparisons.items()}  # fmt: skip
    symbols = list(dict.fromkeys(s for values in per_element.values() for s in values))
    columns = [name for name, values in per_element.items() if values]
    rows = [[s, *(_num(per_element[c].get(s)) for c in columns)] for s in symbols]
    return lines + ["Force RMSE per element (meV/Å):", ""] + _table(["element", *columns], rows)


def _dynamics(v: Mapping[str, Any]) -> list[str]:
    header = ["model", "drift (meV/atom/ps)", "fluctuation (meV/atom)", "final T (K)",
              "steps done", "status"]  # fmt: skip
    rows = []
    for name in ("teacher", "student"):
        n = v.get(f"nve_{name}") or {}
        status = f"blew up: {n['problem']}" if n.get("problem") else "ok"
        rows.append([name, _num(n.get("drift_mev_per_atom_ps"), 3),
                     _num(n.get("fluctuation_mev_per_atom"), 4),
                     _num(n.get("final_temperature_k"), 0),
                     f"{n.get('steps_completed')} / {n.get('steps')}", status])  # fmt: skip
    rdf = v.get("rdf") or {}
    distance = f"blew up: {rdf['problem']}" if rdf.get("problem") else _num(rdf.get("distance"), 4)
    lines = ["### Molecular dynamics", ""] + _table(header, rows)
    return lines + [
        f"Langevin {rdf.get('kind', 'g(r)')} over {rdf.get('n_frames')} snapshots per model: "
        f"distance ∫|Δg| dr / ∫g dr = {distance}.", "",
    ]  # fmt: skip


def _quality(v: Mapping[str, Any]) -> list[str]:
    header = ["rotation force error (rel)", "rotation energy error (rel)", "equigrad ‖Δrot‖ (eV)",
              "equigrad (rel)", "confidence Spearman ρ", "dtype"]  # fmt: skip
    row = [_value(v.get("rotation_force_rel")), _value(v.get("rotation_energy_rel")),
           _value(v.get("equigrad_norm_ev")), _value(v.get("equigrad_relative")),
           _num(v.get("confidence_spearman"), 3), v.get("symmetry_dtype")]  # fmt: skip
    speed = v.get("speed") or {}
    speed_row = [_num(speed.get("teacher_ms")), _num(speed.get("student_ms")),
                 _num(speed.get("speedup")), speed.get("n_atoms"), speed.get("dtype"),
                 speed.get("threads"), speed.get("device")]  # fmt: skip
    speed_header = ["teacher ms/step", "student ms/step", "speed-up", "atoms", "dtype", "threads",
                    "device"]  # fmt: skip
    return (["### Symmetry and confidence", ""] + _table(header, [row])
            + ["### Speed (median, interleaved in one process)", ""]
            + _table(speed_header, [speed_row]))  # fmt: skip


def _how(summary: Mapping[str, Any]) -> list[str]:
    import torch

    speed = (summary.get("validation") or {}).get("speed") or {}
    structure = summary.get("structure") or {}
    lines = ["## How it was made", ""]
    if summary.get("command"):
        lines += [f"- command: `{summary['command']}`"]
    lines += [
        f"- macelerate {__version__}, torch {torch.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()} on {platform.platform()}",
        f"- device: {speed.get('device', '-')}, threads: {speed.get('threads', '-')}, "
        f"speed dtype: {speed.get('dtype', '-')}",
        f"- teacher: {_value(summary.get('teacher'))}",
        f"- structure: {_structure(summary)}, pbc {_value(structure.get('pbc'))}",
        f"- chosen student: {summary.get('chosen') or 'none'}",
    ]
    lines += [f"- files: {_value(summary.get('files'))}"]
    metatomic = (summary.get("export") or {}).get("metatomic")
    if metatomic:
        lines += [f"- metatomic export: {_value(metatomic)}"]
    stages = summary.get("stages") or {}
    lines += [f"- time: {_value(stages)} (s)", ""]
    timings = (summary.get("validation") or {}).get("stage_seconds") or {}
    if timings:
        lines += ["Validation stages (s):", ""]
        lines += _table(list(timings), [[_num(s, 1) for s in timings.values()]])
    return lines


def render_report(summary: Mapping[str, Any], figures: Sequence[str]) -> str:
    """The ``report.md`` text; ``figures`` are the PNG names written beside it."""
    lines = ["# macelerate compress report card", "", f"**{summary['verdict']}**", ""]
    lines += [f"Targets met: {_value(bool(summary.get('met')))}. Student for {_structure(summary)}:"
              f" {summary.get('chosen') or 'none'}.", ""]  # fmt: skip
    lines += _targets(summary) + _ladder(summary)
    validation = summary.get("validation")
    lines += [f"## Validation of {summary.get('chosen') or 'the student'}", ""]
    if validation:
        if validation.get("failed"):
            lines += [f"**The student's MD failed**: {validation.get('problem')}", ""]
        lines += _accuracy(validation) + _dynamics(validation) + _quality(validation)
    else:
        lines += ["No student was validated.", ""]
    lines += ["## Figures", ""]
    lines += [f"![{FIGURES[name]}]({name})\n" for name in figures] or ["No figures.", ""]
    return "\n".join(lines + _how(summary))


def _check(summary: Mapping[str, Any]) -> None:
    if not isinstance(summary, Mapping):
        raise ReportCardError(f"the summary must be a dict, got {type(summary).__name__}")
    if not isinstance(summary.get("verdict"), str) or not summary["verdict"].strip():
        raise ReportCardError("the summary needs a one-line 'verdict' string")
    validation = summary.get("validation")
    if validation is not None and not isinstance(validation, Mapping):
        raise ReportCardError(
            "summary['validation'] must be StudentValidation.to_dict() (a dict) or None, "
            f"got {type(validation).__name__}"
        )


def write_report_card(out_dir: Path, summary: dict[str, Any]) -> Path:
    """Write ``out_dir/report.md`` and its PNG figures (see the module docstring).

    Args:
        out_dir: the run's folder (created if needed).
        summary: JSON-safe dict with ``verdict`` (one line), ``met``, ``teacher``, ``structure``
            (``formula``, ``n_atoms``, ``pbc``), ``target``, ``ladder`` (rows with ``name``,
            ``architecture``, ``ms_per_step``, ``speedup``, ``trained``, ``val_forces_rmse_mev``,
            ``meets_speed``, ``meets_accuracy``), ``chosen``, ``stages``, ``validation``
            (``StudentValidation.to_dict()`` or None) and ``files``; optional ``checks``
            (target name -> ``{target, measured, met}``) and ``command``.

    Returns:
        The path of ``report.md``.

    Raises:
        ReportCardError: no verdict, or a validation entry that is not a dict.
    """
    _check(summary)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    validation = summary.get("validation") or {}
    plots = {
        "parity.png": lambda p: plot_parity(validation.get("series") or {}, p),
        "per_element.png": lambda p: plot_per_element(validation, p),
        "nve.png": lambda p: plot_nve(validation, p),
        "rdf.png": lambda p: plot_rdf(validation, p),
        "speed.png": lambda p: plot_speed(summary, p),
    }
    written = [name for name, plot in plots.items() if plot(out_dir / name) is not None]
    text = render_report(summary, written)
    return write_atomically(out_dir / "report.md", lambda tmp: tmp.write_text(text, "utf-8"))
