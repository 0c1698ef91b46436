"""Validate a distilled student against its teacher: accuracy, MD, structure, symmetry, speed.

:func:`validate_student` measures, for one student and its teacher:

- accuracy on teacher-labelled held-out structures (energy meV/atom, forces meV/Å per Cartesian
  component, stress meV/Å³, per-element force RMSE) and, given user reference labels (e.g. DFT),
  both models' errors against them and ``force_error_ratio`` = student / teacher force RMSE;
- energy conservation of an NVE run of each model from the same start (drift meV/atom/ps,
  fluctuation meV/atom), keeping the total-energy traces;
- the student's rotation error and equigrad ‖Δrot‖;
- the pair-distance distribution of a Langevin run of each model from the same start
  (:func:`pair_distribution`) and the distance between the two;
- the calibration of the student's confidence head (Spearman ρ of predicted vs true per-atom
  force error against the teacher's labels);
- time per energy+forces step of both models, interleaved in one process (:func:`measure_speed`).

A student whose MD blows up does not raise: its NVE/RDF section keeps the error text and
:attr:`StudentValidation.failed` is true. The teacher's MD blowing up raises
:class:`~macelerate.errors.MDInstabilityError`: then the settings (time step, temperature) or the
structure are wrong, not the student.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import ase.io
import numpy as np
from ase import Atoms
from tqdm import tqdm

from macelerate._dtypes import MODEL_DTYPES
from macelerate.calculator import Calculator
from macelerate.checks.equigrad import check_equigrad
from macelerate.checks.nve import energy_fluctuation, fit_drift
from macelerate.checks.symmetry import check_symmetry
from macelerate.data.labels import LabelKeys, forces_labels, get_label
from macelerate.errors import DataFileError, MacelerateError, MDInstabilityError
from macelerate.evaluate import AccuracyReport, compare, label_references, predict_batched
from macelerate.md import MDConfig, MDResult, run_md
from macelerate.models.potential import Potential
from macelerate.pipeline.distributions import pair_distribution, rdf_distance, spearman
from macelerate.pipeline.timing import SpeedComparison, measure_speed

PARITY_POINTS = 5000
"""Most force components kept per parity series in :attr:`StudentValidation.series`."""
BATCH_SIZE = 8
"""Structures per model call on the test and reference sets."""

T = TypeVar("T")


class ValidationConfigError(MacelerateError, ValueError):
    """A :class:`ValidationConfig` with impossible settings."""


@dataclass(frozen=True)
class ValidationConfig:
    """Settings of :func:`validate_student`.

    Attributes:
        nve_steps: velocity-Verlet steps of each NVE run (>= 2).
        timestep_fs: MD time step in fs (NVE and Langevin runs).
        temperature_k: initial NVE temperature and Langevin bath temperature, K.
        md_steps_rdf: Langevin steps of each RDF run (>= 1).
        rdf_r_max: Å, largest pair distance histogrammed.
        rdf_bins: histogram bins over [0, ``rdf_r_max``].
        rdf_every: steps between RDF snapshots (the starting structure itself is left out).
        speed_repeats: timed steps per model, interleaved; the median is reported.
        threads: torch CPU threads during the speed measurement (None: as the process has).
        dtype: float dtype of the speed measurement, ``"float32"`` or ``"float64"``.
        seed: seed of initial velocities, Langevin noise, rotations and parity subsampling.
    """

    nve_steps: int = 200
    timestep_fs: float = 0.5
    temperature_k: float = 300.0
    md_steps_rdf: int = 200
    rdf_r_max: float = 6.0
    rdf_bins: int = 120
    rdf_every: int = 5
    speed_repeats: int = 7
    threads: int | None = None
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.nve_steps < 2:
            problems.append(f"nve_steps must be >= 2 (a drift needs a slope), got {self.nve_steps}")
        for name in ("md_steps_rdf", "rdf_bins", "rdf_every", "speed_repeats"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.timestep_fs > 0 or not self.rdf_r_max > 0:
            problems.append("timestep_fs and rdf_r_max must be positive")
        if not self.temperature_k >= 0:
            problems.append(f"temperature_k must be >= 0, got {self.temperature_k}")
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1 or None, got {self.threads}")
        if self.dtype not in MODEL_DTYPES:
            problems.append(f"dtype must be one of {list(MODEL_DTYPES)}, got {self.dtype!r}")
        if problems:
            raise ValidationConfigError("invalid ValidationConfig: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationConfig:
        """Build from a plain dict; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValidationConfigError(
                f"unknown ValidationConfig keys {unknown}; known keys: {sorted(known)}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorSummary:
    """Errors of one model against one set of reference values (None: not compared).

    Attributes:
        n_structures: structures compared.
        n_atoms: atoms compared.
        energy_rmse_mev_per_atom: RMSE of the energy per atom, meV/atom.
        energy_mae_mev_per_atom: MAE of the energy per atom, meV/atom.
        force_rmse_mev_per_a: RMSE per Cartesian force component, meV/Å.
        force_mae_mev_per_a: MAE per Cartesian force component, meV/Å.
        stress_rmse_mev_per_a3: RMSE per stress tensor element, meV/Å³ (periodic structures).
        per_element_force_rmse_mev_per_a: element symbol -> force RMSE, meV/Å.
    """

    n_structures: int
    n_atoms: int
    energy_rmse_mev_per_atom: float | None
    energy_mae_mev_per_atom: float | None
    force_rmse_mev_per_a: float | None
    force_mae_mev_per_a: float | None
    stress_rmse_mev_per_a3: float | None
    per_element_force_rmse_mev_per_a: dict[str, float]

    @classmethod
    def from_report(cls, report: AccuracyReport) -> ErrorSummary:
        return cls(
            n_structures=report.n_structures, n_atoms=report.n_atoms,
            energy_rmse_mev_per_atom=report.energy_rmse, energy_mae_mev_per_atom=report.energy_mae,
            force_rmse_mev_per_a=report.force_rmse, force_mae_mev_per_a=report.force_mae,
            stress_rmse_mev_per_a3=report.stress_rmse,
            per_element_force_rmse_mev_per_a={
                symbol: errors.force_rmse for symbol, errors in report.per_element.items()
            },
        )  # fmt: skip


@dataclass(frozen=True)
class NVESummary:
    """One NVE run: drift and fluctuation of the total energy (None when the run blew up).

    Attributes:
        steps: steps asked for.
        steps_completed: steps done before the end or the blow-up.
        timestep_fs: fs.
        drift_mev_per_atom_ps: least-squares slope of E_total, meV/atom/ps.
        fluctuation_mev_per_atom: RMS deviation of E_total from its mean, meV/atom.
        final_temperature_k: K at the last recorded step.
        problem: the stability error's text when the run blew up, else None.
    """

    steps: int
    steps_completed: int
    timestep_fs: float
    drift_mev_per_atom_ps: float | None
    fluctuation_mev_per_atom: float | None
    final_temperature_k: float | None
    problem: str | None = None

    @property
    def failed(self) -> bool:
        return self.problem is not None


@dataclass(frozen=True)
class RDFComparison:
    """Pair-distance distributions of a teacher-driven and a student-driven Langevin run.

    Attributes:
        kind: ``"g(r)"`` (periodic in 3D) or ``"pair-distance density"`` (see
            :func:`pair_distribution`).
        distance: ∫|g_student - g_teacher| dr / ∫ g_teacher dr (0: identical; None: the
            student's run failed or the teacher's distribution is empty).
        n_frames: snapshots averaged per run.
        r_max: Å.
        bins: histogram bins.
        problem: the student's stability error text when its run blew up, else None.
    """

    kind: str
    distance: float | None
    n_frames: int
    r_max: float
    bins: int
    problem: str | None = None


@dataclass(frozen=True)
class StudentValidation:
    """Everything :func:`validate_student` measured; :meth:`to_dict` is JSON-safe.

    Attributes:
        structure: ``formula``, ``n_atoms``, ``pbc`` of the MD/speed structure.
        vs_teacher: the student's errors against the teacher's labels on the test set.
        teacher_vs_reference: the teacher's errors against the user's reference labels.
        student_vs_reference: the student's errors against the user's reference labels.
        force_error_ratio: student / teacher force RMSE against the reference labels.
        nve_teacher: the teacher's NVE run.
        nve_student: the student's NVE run.
        rotation_force_rel: the student's largest relative force error under rotations.
        rotation_energy_rel: the student's largest relative energy error under rotations.
        equigrad_norm_ev: the student's ‖∂E/∂G‖ at G = 0, eV (0 for an invariant energy).
        equigrad_relative: ``equigrad_norm_ev`` over a force-moment scale.
        symmetry_dtype: the dtype the student's symmetry was measured in.
        rdf: the Langevin-run pair distributions compared.
        confidence_spearman: Spearman ρ of the student's predicted per-atom force error against
            its true error vs the teacher (None: no confidence head, or constant values).
        speed: time per step of teacher and student.
        config: the settings used.
        stage_seconds: wall time of each stage, s.
        series: raw data for figures: ``parity_test``, ``parity_reference``, ``nve``, ``rdf``
            (see :func:`validate_student`).
    """

    structure: dict[str, Any]
    vs_teacher: ErrorSummary
    teacher_vs_reference: ErrorSummary | None
    student_vs_reference: ErrorSummary | None
    force_error_ratio: float | None
    nve_teacher: NVESummary
    nve_student: NVESummary
    rotation_force_rel: float
    rotation_energy_rel: float
    equigrad_norm_ev: float
    equigrad_relative: float
    symmetry_dtype: str
    rdf: RDFComparison
    confidence_spearman: float | None
    speed: SpeedComparison
    config: ValidationConfig
    stage_seconds: dict[str, float] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        """Whether the student's MD blew up (NVE or Langevin)."""
        return self.nve_student.failed or self.rdf.problem is not None

    @property
    def problem(self) -> str | None:
        """The student's MD error texts, or None."""
        texts = [text for text in (self.nve_student.problem, self.rdf.problem) if text]
        return "; ".join(texts) or None

    def to_dict(self) -> dict[str, Any]:
        """All fields plus ``failed`` and ``problem``; NaN/inf become None, tuples lists."""
        return json_safe({**asdict(self), "failed": self.failed, "problem": self.problem})


def json_safe(value: Any) -> Any:
    """``value`` with tuples and arrays as lists, numpy scalars as Python, NaN/inf as None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value


def _subsample(arrays: Sequence[np.ndarray], *, seed: int) -> list[list[float]]:
    """The same at most :data:`PARITY_POINTS` flattened entries of each array, as lists."""
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    if len(flat[0]) > PARITY_POINTS:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(flat[0]), size=PARITY_POINTS, replace=False))
        flat = [f[keep] for f in flat]
    return [f.tolist() for f in flat]


def _test_accuracy(
    student: Potential, test: Sequence[Atoms], *, seed: int, progress: bool
) -> tuple[ErrorSummary, dict[str, list[float]]]:
    """The student's errors against the teacher labels of ``test``, and parity series."""
    with_stress = all(
        bool(atoms.pbc.all()) and get_label(atoms, "stress", index=i, path="test") is not None
        for i, atoms in enumerate(test)
    )
    labels = label_references(test, LabelKeys(stress="stress" if with_stress else None),
                              source="test")  # fmt: skip
    predicted = predict_batched(
        student, test, batch_size=BATCH_SIZE, compute_stress=with_stress, progress=progress,
        description="student on test",
    )  # fmt: skip
    assert labels.forces is not None and predicted.forces is not None  # LabelKeys() has forces
    teacher_f, student_f = _subsample(
        [np.concatenate(labels.forces), np.concatenate(predicted.forces)], seed=seed
    )
    summary = ErrorSummary.from_report(compare(test, predicted, labels))
    return summary, {"teacher_forces_ev_per_a": teacher_f, "student_forces_ev_per_a": student_f}


def _reference_accuracy(
    teacher: Potential,
    student: Potential,
    reference: Sequence[Atoms],
    keys: LabelKeys,
    *,
    seed: int,
    progress: bool,
) -> tuple[ErrorSummary, ErrorSummary, dict[str, list[float]] | None]:
    """Teacher's and student's errors against the reference labels, and parity series."""
    labels = label_references(reference, keys, source="reference")
    with_stress = labels.stress is not None
    summaries, forces = [], []
    for name, model in (("teacher", teacher), ("student", student)):
        predicted = predict_batched(
            model, reference, batch_size=BATCH_SIZE, compute_stress=with_stress,
            progress=progress, description=f"{name} on reference",
        )  # fmt: skip
        summaries.append(ErrorSummary.from_report(compare(reference, predicted, labels)))
        forces.append(np.concatenate(predicted.forces or [np.zeros((0, 3))]))
    parity = None
    if labels.forces is not None:
        values = _subsample([np.concatenate(labels.forces), *forces], seed=seed)
        names = ("reference", "teacher", "student")
        parity = {f"{name}_forces_ev_per_a": v for name, v in zip(names, values)}
    return summaries[0], summaries[1], parity


def confidence_spearman(student: Potential, test: Sequence[Atoms]) -> float | None:
    """Spearman ρ of the student's predicted per-atom force error (its confidence head) against
    its actual error |F_student - F_label| on ``test``'s ``forces`` labels (None: no head)."""
    if not student.has_confidence:
        return None
    labels = forces_labels(test, "forces", path="test")
    predicted, actual = [], []
    for start in range(0, len(test), BATCH_SIZE):
        out = student.forward(student.build_graph(list(test[start : start + BATCH_SIZE])))
        reference = np.concatenate(labels[start : start + BATCH_SIZE])  # [n_atoms, 3] eV/Å
        forces = out["forces"].double().cpu().numpy()
        actual.append(np.linalg.norm(forces - reference, axis=1))
        predicted.append(out["force_confidence"].double().cpu().numpy())
    return spearman(np.concatenate(predicted), np.concatenate(actual))


def _md_start(potential: Potential, structure: Atoms) -> Atoms:
    start = structure.copy()
    start.set_momenta(np.zeros((len(structure), 3)))  # run_md draws them from the seed
    start.calc = Calculator(potential)
    return start


def _nve(
    potential: Potential, structure: Atoms, config: ValidationConfig, *, tolerate: bool,
    progress: bool,
) -> tuple[NVESummary, dict[str, list[float]]]:  # fmt: skip
    """One NVE run: its summary and trace (time ps, E_total - E_total(0) in meV/atom)."""
    md = MDConfig(steps=config.nve_steps, timestep_fs=config.timestep_fs, ensemble="nve",
                  temperature_k=config.temperature_k, seed=config.seed)  # fmt: skip
    problem, result = None, None
    try:
        result = run_md(_md_start(potential, structure), md, progress=progress)
    except MDInstabilityError as error:
        if not tolerate:
            raise
        problem = str(error)
        result = error.result if isinstance(error.result, MDResult) else None
    energy = np.asarray(result.total_energy if result is not None else [], dtype=np.float64)
    n = len(structure)
    times = np.arange(len(energy)) * config.timestep_fs * 1e-3  # ps
    trace = {
        "time_ps": times.tolist(),
        "total_energy_mev_per_atom": (1e3 * (energy - energy[:1].sum()) / n).tolist(),
    }
    ok = problem is None and len(energy) > 1
    summary = NVESummary(
        steps=config.nve_steps, steps_completed=max(len(energy) - 1, 0),
        timestep_fs=config.timestep_fs,
        drift_mev_per_atom_ps=fit_drift(times, energy, n_atoms=n) if ok else None,
        fluctuation_mev_per_atom=energy_fluctuation(energy, n_atoms=n) if ok else None,
        final_temperature_k=float(result.temperature[-1]) if result is not None else None,
        problem=problem,
    )  # fmt: skip
    return summary, trace


def _langevin_frames(
    potential: Potential, structure: Atoms, config: ValidationConfig, *, progress: bool
) -> list[Atoms]:
    """Snapshots every ``rdf_every`` steps of a Langevin run from ``structure`` (not included)."""
    every = min(config.rdf_every, config.md_steps_rdf)
    with tempfile.TemporaryDirectory(prefix="macelerate-rdf-") as folder:
        path = Path(folder) / "rdf.traj"
        md = MDConfig(
            steps=config.md_steps_rdf, timestep_fs=config.timestep_fs, ensemble="langevin",
            temperature_k=config.temperature_k, seed=config.seed, trajectory=str(path),
            write_every=every,
        )  # fmt: skip
        run_md(_md_start(potential, structure), md, progress=progress)
        frames = ase.io.read(path, index=":")
    return list(frames)[1:]  # frame 0 is the starting structure


def _rdf(
    teacher: Potential, student: Potential, structure: Atoms, config: ValidationConfig, *,
    progress: bool,
) -> tuple[RDFComparison, dict[str, Any]]:  # fmt: skip
    frames = _langevin_frames(teacher, structure, config, progress=progress)
    r, g_teacher, kind = pair_distribution(frames, r_max=config.rdf_r_max, bins=config.rdf_bins)
    g_student, problem, distance = None, None, None
    try:
        student_frames = _langevin_frames(student, structure, config, progress=progress)
        _, g_student, _ = pair_distribution(
            student_frames, r_max=config.rdf_r_max, bins=config.rdf_bins
        )
        distance = rdf_distance(g_teacher, g_student)
    except MDInstabilityError as error:
        problem = str(error)
    comparison = RDFComparison(
        kind=kind, distance=distance, n_frames=len(frames), r_max=config.rdf_r_max,
        bins=config.rdf_bins, problem=problem,
    )  # fmt: skip
    curves = {"kind": kind, "r_a": r.tolist(), "teacher": g_teacher.tolist(),
              "student": None if g_student is None else g_student.tolist()}  # fmt: skip
    return comparison, curves


def _check_inputs(test: Sequence[Atoms], reference: Sequence[Atoms] | None) -> None:
    if len(test) == 0:
        raise DataFileError("the test set is empty: pass teacher-labelled held-out structures")
    if reference is not None and len(reference) == 0:
        raise DataFileError("the reference set is empty: pass labelled structures or None")


DEFAULT_CONFIG = ValidationConfig()


def validate_student(
    teacher: Potential,
    student: Potential,
    test: Sequence[Atoms],
    structure: Atoms,
    *,
    reference: Sequence[Atoms] | None = None,
    reference_keys: LabelKeys | None = None,
    config: ValidationConfig = DEFAULT_CONFIG,
    progress: bool = True,
) -> StudentValidation:
    """Measure a student against its teacher (see the module docstring for what and why).

    Args:
        teacher: the teacher model.
        student: the student model (a Student or any model wrapped in a Potential).
        test: teacher-labelled held-out structures (``atoms.calc`` holding ``energy``,
            ``forces`` and, for periodic cells, ``stress``: :func:`~macelerate.train.teacher.
            label_structures`); never modified.
        structure: the start of the MD runs and the structure timed; never modified.
        reference: the user's labelled structures (e.g. DFT), or None.
        reference_keys: label names in ``reference`` (default ``LabelKeys()``).
        config: settings.
        progress: tqdm bars per stage (on stderr).

    Returns:
        A :class:`StudentValidation`. Its ``series`` holds ``parity_test``
        (``teacher_forces_ev_per_a``, ``student_forces_ev_per_a``: the same at most
        :data:`PARITY_POINTS` force components), ``parity_reference`` (``reference_``/
        ``teacher_``/``student_forces_ev_per_a``, or None), ``nve`` (``teacher``/``student``:
        ``time_ps``, ``total_energy_mev_per_atom`` relative to the start) and ``rdf``
        (``kind``, ``r_a``, ``teacher``, ``student`` or None).

    Raises:
        DataFileError: an empty test or reference set, or missing labels.
        StructureError: a structure a model cannot evaluate, or ``structure`` has < 2 atoms.
        MDInstabilityError: the teacher's MD blew up (the student's is recorded instead).
    """
    _check_inputs(test, reference)
    seconds: dict[str, float] = {}
    n_stages = 8 + (reference is not None)
    bar = tqdm(total=n_stages, desc="validate", unit="stage", disable=not progress)

    def stage(name: str, work: Callable[[], T]) -> T:
        bar.set_description(f"validate: {name}")
        started = time.perf_counter()
        value = work()
        seconds[name] = time.perf_counter() - started
        bar.update(1)
        return value

    with bar:
        vs_teacher, parity = stage(
            "accuracy", lambda: _test_accuracy(student, test, seed=config.seed, progress=progress)
        )
        teacher_ref = student_ref = parity_ref = None
        if reference is not None:
            teacher_ref, student_ref, parity_ref = stage("reference", lambda: _reference_accuracy(
                teacher, student, reference, reference_keys or LabelKeys(), seed=config.seed,
                progress=progress,
            ))  # fmt: skip
        spearman_rho = stage("confidence", lambda: confidence_spearman(student, test))
        nve_teacher, trace_teacher = stage("nve teacher", lambda: _nve(
            teacher, structure, config, tolerate=False, progress=progress))  # fmt: skip
        nve_student, trace_student = stage("nve student", lambda: _nve(
            student, structure, config, tolerate=True, progress=progress))  # fmt: skip
        rdf, curves = stage("rdf", lambda: _rdf(teacher, student, structure, config,
                                                 progress=progress))  # fmt: skip
        symmetry = stage("symmetry", lambda: check_symmetry(student, structure, seed=config.seed))
        equigrad = stage("equigrad", lambda: check_equigrad(student, structure))
        speed = stage("speed", lambda: measure_speed(
            teacher, student, structure, dtype=config.dtype, repeats=config.speed_repeats,
            threads=config.threads, progress=progress,
        ))  # fmt: skip
    ratio = None
    if teacher_ref is not None and student_ref is not None:
        t_rmse, s_rmse = teacher_ref.force_rmse_mev_per_a, student_ref.force_rmse_mev_per_a
        ratio = s_rmse / t_rmse if t_rmse and s_rmse is not None else None
    return StudentValidation(
        structure={"formula": structure.get_chemical_formula(), "n_atoms": len(structure),
                   "pbc": [bool(p) for p in structure.pbc]},  # fmt: skip
        vs_teacher=vs_teacher, teacher_vs_reference=teacher_ref, student_vs_reference=student_ref,
        force_error_ratio=ratio, nve_teacher=nve_teacher, nve_student=nve_student,
        rotation_force_rel=symmetry.rotation.force_rel,
        rotation_energy_rel=symmetry.rotation.energy_rel,
        equigrad_norm_ev=equigrad.norm, equigrad_relative=equigrad.relative,
        symmetry_dtype=symmetry.dtype, rdf=rdf, confidence_spearman=spearman_rho,
        speed=speed, config=config, stage_seconds=seconds,
        series={"parity_test": parity, "parity_reference": parity_ref, "rdf": curves,
                "nve": {"teacher": trace_teacher, "student": trace_student}},
    )  # fmt: skip
