"""The report's analysis, pure: speed-ups against every reference engine, and accuracy against
speed.

Bench rows are grouped by (device, settings). A row's speed-up against a reference engine
(:data:`~macelerate.bench.schema.REFERENCE_ENGINES`: ``mace-torch``, ``symmetrix``) is that
engine's time on the same model, system and size in the same group divided by the row's own.
Accuracy-versus-speed points pair an eval file with bench rows by ``model_label`` and ``lever``.
:mod:`macelerate.report.markdown` and :mod:`macelerate.report.plots` render these records;
:mod:`macelerate.report.build` drives the whole report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from macelerate.bench.schema import REFERENCE_ENGINES, BenchResult
from macelerate.errors import MacelerateError
from macelerate.report.loading import BenchFile, EvalFile


class ReportOptionError(MacelerateError, ValueError):
    """An option of ``macelerate report`` the inputs cannot satisfy."""


@dataclass(frozen=True)
class Speedup:
    """A row's speed against one reference engine.

    ``ratio`` is the reference's median ms / this row's (``None`` without a successful pair);
    ``reference_status`` is the reference run's status, ``None`` when there is none.
    """

    engine: str
    ratio: float | None
    reference_status: str | None


@dataclass(frozen=True)
class TableRow:
    """A bench row with its file and its speed-up against each reference engine of its group."""

    row: BenchResult
    file: Path
    speedups: tuple[Speedup, ...]

    @property
    def speedup(self) -> float | None:
        """The speed-up against the group's first reference engine (``mace-torch`` if present)."""
        return self.speedups[0].ratio if self.speedups else None

    @property
    def reference_status(self) -> str | None:
        """The status of that reference engine's run, ``None`` when there is none."""
        return self.speedups[0].reference_status if self.speedups else None


@dataclass(frozen=True)
class BenchGroup:
    """Rows measured on one device with one dtype and timing settings: one table.

    ``references``: the reference engines the rows' speed-ups are taken against, in
    :data:`~macelerate.bench.schema.REFERENCE_ENGINES` order: those with rows in the group
    (``mace-torch`` alone when none has).
    """

    device: str
    settings: str
    files: tuple[BenchFile, ...]
    rows: tuple[TableRow, ...]
    references: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.device} · {self.settings}"


@dataclass(frozen=True)
class ParetoPoint:
    """One (model_label, lever): speed in steps/s from bench, force RMSE in meV/Å from eval."""

    model_label: str
    lever: str
    engine: str
    steps_per_s: float
    force_rmse: float
    eval_path: Path
    on_front: bool


@dataclass(frozen=True)
class ParetoSelection:
    """Accuracy-versus-speed points, the size their speed was taken at, and what was left out."""

    points: tuple[ParetoPoint, ...]
    n_atoms: int | None
    how: str
    group: str | None
    notes: tuple[str, ...]


def pareto_front(speeds: Sequence[float], errors: Sequence[float]) -> tuple[int, ...]:
    """Indices of the points no other point beats on both speed and error.

    A point is dominated when another is at least as fast and at least as accurate and strictly
    better in one of the two. Identical points do not dominate each other.

    Returns:
        The non-dominated indices, ordered by increasing speed.
    """
    front = []
    for i, (speed, error) in enumerate(zip(speeds, errors, strict=True)):
        dominated = any(
            s >= speed and e <= error and (s > speed or e < error)
            for s, e in zip(speeds, errors, strict=True)
        )
        if not dominated:
            front.append(i)
    return tuple(sorted(front, key=lambda i: (speeds[i], -errors[i])))


def _reference(row: BenchResult, rows: Sequence[BenchResult], engine: str) -> BenchResult | None:
    """The run of reference ``engine`` on ``row``'s model, system and size: same lever first,
    then ``exact``, then any."""
    same = [
        r
        for r in rows
        if r.engine == engine
        and (r.model_label, r.system, r.n_atoms) == (row.model_label, row.system, row.n_atoms)
    ]
    for lever in (row.lever, "exact"):
        for candidate in same:
            if candidate.lever == lever:
                return candidate
    return same[0] if same else None


def _speedup(row: BenchResult, rows: Sequence[BenchResult], engine: str) -> Speedup:
    reference = _reference(row, rows, engine)
    ratio = None
    if reference is not None and reference.ms_median and row.ms_median:
        ratio = reference.ms_median / row.ms_median
    status = None if reference is None else reference.status
    return Speedup(engine=engine, ratio=ratio, reference_status=status)


def references_present(rows: Sequence[BenchResult]) -> tuple[str, ...]:
    """Reference engines with rows in ``rows`` in table order; ``mace-torch`` alone if none."""
    present = tuple(name for name in REFERENCE_ENGINES if any(r.engine == name for r in rows))
    return present or REFERENCE_ENGINES[:1]


def group_bench(files: Sequence[BenchFile]) -> tuple[BenchGroup, ...]:
    """Group bench rows by (device, settings), in first-seen order, each with its speed-ups
    against every reference engine present in the group."""
    members: dict[tuple[str, str], list[BenchFile]] = {}
    for bench in files:
        members.setdefault((bench.device_label, bench.settings_label), []).append(bench)
    groups = []
    for (device, settings), group_files in members.items():
        pairs = [(bench.path, row) for bench in group_files for row in bench.rows]
        rows = [row for _, row in pairs]
        references = references_present(rows)
        table = sorted(
            (
                TableRow(row, path, tuple(_speedup(row, rows, name) for name in references))
                for path, row in pairs
            ),
            key=lambda t: (
                (t.row.model_label, t.row.n_atoms, t.row.system)
                + (not t.row.is_reference, t.row.lever, t.row.engine)
            ),
        )
        groups.append(BenchGroup(device, settings, tuple(group_files), tuple(table), references))
    return tuple(groups)


def _pick_errors(evals: Sequence[EvalFile]) -> dict[tuple[str, str], EvalFile]:
    """One eval per (model_label, lever): errors against data labels first, then file order."""
    chosen: dict[tuple[str, str], EvalFile] = {}
    for evaluation in sorted(evals, key=lambda e: e.against is not None):
        if evaluation.force_rmse is not None:
            chosen.setdefault((evaluation.model_label, evaluation.lever), evaluation)
    return chosen


def _sizes(group: BenchGroup, keys: set[tuple[str, str]]) -> dict[tuple[str, str], set[int]]:
    sizes: dict[tuple[str, str], set[int]] = {}
    for t in group.rows:
        key = (t.row.model_label, t.row.lever)
        if key in keys and t.row.status == "ok":
            sizes.setdefault(key, set()).add(t.row.n_atoms)
    return sizes


def _choose_size(sizes: dict[tuple[str, str], set[int]], n_atoms: int | None) -> tuple[int, str]:
    if n_atoms is not None:
        if not any(n_atoms in s for s in sizes.values()):
            found = sorted(set().union(*sizes.values()))
            raise ReportOptionError(
                f"--pareto-atoms {n_atoms}: no model/lever with an eval file has a successful "
                f"bench run at that size; sizes available: {found}"
            )
        return n_atoms, "set by --pareto-atoms"
    common = set.intersection(*sizes.values())
    if common:
        return max(common), "the largest size all points share"
    counts = {n: sum(n in s for s in sizes.values()) for n in set().union(*sizes.values())}
    best = max(counts, key=lambda n: (counts[n], n))
    return best, "the size most points share; no size is common to all"


def _speed_row(group: BenchGroup, key: tuple[str, str], n_atoms: int) -> BenchResult:
    rows = [
        t.row
        for t in group.rows
        if (t.row.model_label, t.row.lever) == key
        and t.row.n_atoms == n_atoms
        and t.row.status == "ok"
    ]
    return max(rows, key=lambda r: (not r.is_reference, r.steps_per_s or 0.0))


def select_pareto(
    groups: Sequence[BenchGroup], evals: Sequence[EvalFile], *, n_atoms: int | None = None
) -> ParetoSelection:
    """Pair force errors with speeds at one size, and mark the non-dominated points.

    Speeds come from the (device, settings) group with the most matching (model_label, lever);
    at one size a non-reference engine is preferred. Left-out pairs are explained in ``notes``.

    Raises:
        ReportOptionError: ``n_atoms`` is given but no matching point was measured at it.
    """
    errors = _pick_errors(evals)
    if not errors:
        why = "no eval file reports a force RMSE" if evals else "no eval files were given"
        return ParetoSelection((), None, "", None, (why,))
    matched = [_sizes(group, set(errors)) for group in groups]
    best = max(range(len(groups)), key=lambda i: len(matched[i]), default=None)
    if best is None or not matched[best]:
        bench_keys = sorted({(t.row.model_label, t.row.lever) for g in groups for t in g.rows})
        why = (
            "no (model_label, lever) has both a successful bench run and an eval file: "
            f"bench has {_names(bench_keys) or 'none'}, eval has {_names(sorted(errors))}"
        )
        return ParetoSelection((), None, "", None, (why,))
    group, sizes = groups[best], matched[best]
    size, how = _choose_size(sizes, n_atoms)
    notes = [
        f"{_names([key])}: no successful bench run at {size} atoms (has {sorted(s)})"
        for key, s in sizes.items()
        if size not in s
    ]
    notes += [
        f"{_names([key])}: no bench run on {group.label}" for key in errors if key not in sizes
    ]
    keys = [key for key, s in sizes.items() if size in s]
    rows = [_speed_row(group, key, size) for key in keys]
    speeds = [float(r.steps_per_s or 0.0) for r in rows]
    rmse = [float(errors[key].force_rmse or 0.0) for key in keys]
    front = set(pareto_front(speeds, rmse))
    points = tuple(
        ParetoPoint(key[0], key[1], row.engine, speed, err, errors[key].path, i in front)
        for i, (key, row, speed, err) in enumerate(zip(keys, rows, speeds, rmse))
    )
    return ParetoSelection(points, size, how, group.label, tuple(notes))


def _names(keys: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{label}/{lever}" for label, lever in keys)
