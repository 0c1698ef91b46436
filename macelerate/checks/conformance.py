"""Conformance: does a model keep the contract of a macelerate Potential and its Calculator?

:func:`check_potential` evaluates a model on a few different structures (by default a periodic
8-atom cell, a smaller periodic cell and a 5-atom cluster of the model's elements) and gives a
:class:`~macelerate.checks.thresholds.Verdict` with a measured number for each property:

1. ``batch``: one batched :meth:`Potential.predict` equals predicting each structure alone
   (max |ΔE| per atom, max per-atom |ΔF|, max |Δσ| of periodic structures);
2. ``inputs``: nothing a prediction is given changes, exactly: the ``Atoms`` (positions, cell,
   numbers, pbc, info, arrays) through ``predict`` and the Calculator, and the graph tensors
   (values, shapes, dtypes, ``requires_grad``) through :meth:`Potential.forward`;
3. ``calculator``: :class:`macelerate.Calculator` returns the model's own prediction;
4. ``outputs``: energy one per structure in float32/float64, forces [n_atoms, 3] in the
   positions' dtype, stress [n, 3, 3] from the model and [6] (Voigt) from the Calculator for
   periodic structures, every number finite;
5. ``finite diff``: forces = -∂E/∂x and stress = (1/V) ∂E/∂ε (reusing
   :func:`~macelerate.checks.gradients.check_gradients`, which also pins the units eV/Å and
   eV/Å³); skipped with the reason for a student's direct force or stress head;
6-7. ``permutation`` and ``translation``: those families of
   :func:`~macelerate.checks.symmetry.check_symmetry` (rotations are ``run_checks``' job).

Limits of 1 and 3 are the precision tier's symmetry limits times the structures' scale (floors
of :mod:`~macelerate.checks.thresholds`): batching reorders rounding as a permutation does.
Changed inputs and shape errors must be zero. Each quantity keeps its worst verdict over the
structures. Unlike torch-sim's ``validate_model_outputs`` (assertions with fixed absolute
tolerances), numbers are returned, limits follow the arithmetic, stress is compared too and
inputs must stay bit-identical. The runs themselves are in
:mod:`macelerate.checks._conformance_runs`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.stress import full_3x3_to_voigt_6_stress

from macelerate._dtypes import dtype_name
from macelerate.calculator import Calculator
from macelerate.checks._batching import StructureOutput, nan_max
from macelerate.checks._conformance_runs import (
    Findings,
    atoms_state,
    calculator_run,
    forward_run,
    predict_runs,
)
from macelerate.checks.gradients import GradientResult, check_gradients
from macelerate.checks.symmetry import SymmetryResult, check_symmetry
from macelerate.checks.thresholds import (
    ENERGY_FLOOR_PER_ATOM,
    FORCE_FLOOR,
    STRESS_FLOOR,
    Judged,
    Tolerances,
    Verdict,
    judge,
    tolerances_for,
)
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class ConformanceConfig:
    """Settings of :func:`check_potential`.

    Attributes:
        gradient_samples: (atom, direction) pairs per structure for finite-difference forces.
        fd_step: displacement in Å (and strain step); None: the precision tier's.
        finite_differences: check forces = -∂E/∂x and stress = (1/V) ∂E/∂ε (check 5).
        symmetry: check translation and permutation invariance (checks 6 and 7).
        seed: seed of the default structures, displacements and transformations.
    """

    gradient_samples: int = 4
    fd_step: float | None = None
    finite_differences: bool = True
    symmetry: bool = True
    seed: int = 0


@dataclass(frozen=True)
class Agreement:
    """Largest differences between two evaluations of the same structures that must agree.

    A shape mismatch gives NaN (which fails).

    Attributes:
        energy_per_atom: max over structures of |ΔE| / n_atoms, eV/atom.
        force: max per-atom norm |ΔF|, eV/Å.
        stress: max element |Δσ|, eV/Å³ (None: no periodic structure compared).
        energy_scale: max(largest |E| / n_atoms, 1 eV/atom), eV/atom.
        force_scale: max(largest per-atom force norm, 1 eV/Å), eV/Å.
        stress_scale: max(largest |σ| element, 0.01 eV/Å³), eV/Å³.
    """

    energy_per_atom: float
    force: float
    stress: float | None
    energy_scale: float
    force_scale: float
    stress_scale: float

    def verdicts(
        self, check: str, versus: str, tolerances: Tolerances, *, hint: str
    ) -> list[Verdict]:
        """Each difference against the tier's symmetry limit times its scale."""
        verdicts = [
            judge(check, f"|ΔE|/atom vs {versus}", self.energy_per_atom,
                  tolerances.symmetry_energy_rel * self.energy_scale, "eV/atom", hint=hint),
            judge(check, f"|ΔF| vs {versus}", self.force,
                  tolerances.symmetry_force_rel * self.force_scale, "eV/Å", hint=hint),
        ]  # fmt: skip
        if self.stress is not None:
            verdicts.append(
                judge(check, f"|Δσ| vs {versus}", self.stress,
                      tolerances.symmetry_stress_rel * self.stress_scale, "eV/Å³", hint=hint)
            )  # fmt: skip
        return verdicts


@dataclass(frozen=True)
class Skipped:
    """A check that does not apply to this model, and why."""

    check: str
    quantity: str
    reason: str


@dataclass(frozen=True)
class ConformanceReport(Judged):
    """Numbers and verdicts of :func:`check_potential`.

    Attributes:
        structures: names of the structures (``info["structure"]`` or the formula).
        n_atoms: atoms per structure.
        dtype: the model's dtype.
        batch: batched against single predictions.
        calculator: Calculator results against the model's prediction.
        changed_inputs: every input field a prediction changed (empty: none).
        output_errors: every output of a wrong shape or dtype, or missing (empty: none).
        non_finite: NaN/inf values over every output read.
        gradients: finite-difference results per structure (empty: not run).
        symmetry: translation and permutation results per structure (empty: not run).
        skipped: checks that do not apply to this model.
        seconds: wall time.
        config: the settings.
        tolerances: the limits (of the model's precision tier unless given).
        verdicts: one per judged quantity, the worst over structures.
    """

    structures: tuple[str, ...]
    n_atoms: tuple[int, ...]
    dtype: str
    batch: Agreement
    calculator: Agreement
    changed_inputs: tuple[str, ...]
    output_errors: tuple[str, ...]
    non_finite: int
    gradients: tuple[GradientResult, ...]
    symmetry: tuple[SymmetryResult, ...]
    skipped: tuple[Skipped, ...]
    seconds: float
    config: ConformanceConfig
    tolerances: Tolerances
    verdicts: tuple[Verdict, ...]

    def rows(self) -> list[tuple[str, str, float, str]]:
        """(check, quantity, value, unit) of every verdict, for a table."""
        return [(v.check, v.quantity, v.value, v.unit) for v in self.verdicts]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers with the overall ``passed``."""
        return {**asdict(self), "passed": self.passed}


BATCH_HINT = (
    "a structure's result depends on the others in its batch (batch or ptr indices, "
    "per-batch normalisation, padding or neighbour lists leaking between structures)"
)
CALCULATOR_HINT = (
    "the Calculator does not return the model's prediction (units, sign or Voigt order of the "
    "stress, a stale cached result, or a subclass changing results)"
)
DIRECT_FORCES = "forces come from a direct-force head, not from -dE/dx: nothing to compare"
DIRECT_STRESS = "stress comes from a direct-stress head, not from dE/dε: nothing to compare"


def default_structures(atomic_numbers: Sequence[int], *, seed: int = 0) -> list[Atoms]:
    """Three different structures of the model's elements, each with ``info["structure"]``.

    The suite's rattled periodic cell (:func:`~macelerate.checks.suite.default_structure`, 8 or
    27 atoms), another with two atoms removed, and a non-periodic 5-atom cluster. Each has tags
    (an extra per-atom array) so that input-mutation checks see more than positions.
    """
    from macelerate.checks.suite import default_structure  # suite imports this module

    cell = default_structure(list(atomic_numbers), seed=seed)
    smaller = default_structure(list(atomic_numbers), seed=seed + 1)
    del smaller[[0, 1]]
    source = default_structure(list(atomic_numbers), seed=seed + 2)
    cluster = Atoms(numbers=source.numbers[:5], positions=source.positions[:5])
    for atoms, name in ((cell, "periodic cell"), (smaller, "smaller cell"), (cluster, "cluster")):
        atoms.info["structure"] = name
        atoms.set_tags(np.arange(len(atoms)))
    return [cell, smaller, cluster]


def check_potential(
    potential_or_calculator: Potential | Calculator,
    structures: Sequence[Atoms] | None = None,
    *,
    config: ConformanceConfig | None = None,
    tolerances: Tolerances | None = None,
) -> ConformanceReport:
    """Check that a model keeps the Potential and Calculator contract (see the module docstring).

    Args:
        potential_or_calculator: a :class:`Potential`, or a :class:`macelerate.Calculator`
            (checked as given, subclass included; its cached results are replaced).
        structures: at least two different structures (never modified); default:
            :func:`default_structures` of the model's elements.
        config: settings.
        tolerances: pass limits; default: those of the model's precision tier.

    Returns:
        A :class:`ConformanceReport`; ``passed`` is true when every verdict passed.

    Raises:
        TypeError: not a Potential or Calculator, or structures that are not ``ase.Atoms``.
        ValueError: fewer than two structures.
    """
    potential, calculator = _potential_and_calculator(potential_or_calculator)
    config = config or ConformanceConfig()
    tolerances = tolerances or tolerances_for(potential)
    structures = _structures(structures, potential, seed=config.seed)
    start = time.perf_counter()
    states = [atoms_state(atoms) for atoms in structures]
    found = Findings()
    singles, batched = predict_runs(potential, structures, states, found)
    from_calculator = calculator_run(calculator, structures, states, found)
    forward_run(potential, structures, found)
    gradients, symmetry, skipped = _physics_runs(potential, structures, config)
    voigt_singles = [StructureOutput(out.energy, out.forces, _voigt(out.stress)) for out in singles]
    batch = _agreement(singles, batched)
    against_calculator = _agreement(voigt_singles, from_calculator)
    verdicts = _judge_all(
        batch, against_calculator, found, gradients, symmetry, skipped, tolerances
    )
    return ConformanceReport(
        structures=tuple(
            str(a.info.get("structure", a.get_chemical_formula())) for a in structures
        ),
        n_atoms=tuple(len(atoms) for atoms in structures),
        dtype=dtype_name(potential.dtype),
        batch=batch,
        calculator=against_calculator,
        changed_inputs=tuple(found.changed),
        output_errors=tuple(found.errors),
        non_finite=found.non_finite,
        gradients=gradients,
        symmetry=symmetry,
        skipped=skipped,
        seconds=time.perf_counter() - start,
        config=config,
        tolerances=tolerances,
        verdicts=verdicts,
    )


def _potential_and_calculator(model: Any) -> tuple[Potential, Calculator]:
    if isinstance(model, Calculator):
        return model.potential, model
    if isinstance(model, Potential):
        return model, Calculator(model)
    raise TypeError(
        f"check_potential needs a macelerate Potential or Calculator, got {type(model).__name__};"
        " load a model file or module with macelerate.load(...) first"
    )


def _structures(structures: Any, potential: Potential, *, seed: int) -> list[Atoms]:
    if structures is None:
        return default_structures(potential.atomic_numbers, seed=seed)
    items = [] if isinstance(structures, Atoms) else list(structures)
    if isinstance(structures, Atoms) or not all(isinstance(a, Atoms) for a in items):
        raise TypeError("structures must be a list of ase.Atoms (two or more different ones)")
    if len(items) < 2:
        raise ValueError(
            f"batched-versus-single needs at least two different structures, got {len(items)}; "
            "pass more, or structures=None for the built-in three"
        )
    return items


def _physics_runs(
    potential: Potential, structures: list[Atoms], config: ConformanceConfig
) -> tuple[tuple[GradientResult, ...], tuple[SymmetryResult, ...], tuple[Skipped, ...]]:
    """Finite differences (unless both forces and stress are direct), translation, permutation."""
    model = potential.model
    direct_forces = getattr(model, "force_head", None) is not None
    direct_stress = getattr(model, "stress_head", None) is not None
    skipped: list[Skipped] = []
    gradients: tuple[GradientResult, ...] = ()
    if config.finite_differences:
        if direct_forces:
            skipped.append(Skipped("finite diff", "force error (rel)", DIRECT_FORCES))
        if direct_stress and any(atoms.pbc.all() for atoms in structures):
            skipped.append(Skipped("finite diff", "stress error (rel)", DIRECT_STRESS))
        if not (direct_forces and direct_stress):
            gradients = tuple(
                check_gradients(potential, atoms, n_samples=config.gradient_samples,
                                step=config.fd_step, strain_step=config.fd_step, seed=config.seed)
                for atoms in structures
            )  # fmt: skip
    symmetry: tuple[SymmetryResult, ...] = ()
    if config.symmetry:  # rotations and reflections are run_checks' (n_rotations=0 here)
        symmetry = tuple(
            check_symmetry(potential, atoms, n_rotations=0, seed=config.seed)
            for atoms in structures
        )
    return gradients, symmetry, tuple(skipped)


def _judge_all(
    batch: Agreement,
    calculator: Agreement,
    found: Findings,
    gradients: tuple[GradientResult, ...],
    symmetry: tuple[SymmetryResult, ...],
    skipped: tuple[Skipped, ...],
    tolerances: Tolerances,
) -> tuple[Verdict, ...]:
    verdicts = batch.verdicts("batch", "single", tolerances, hint=BATCH_HINT)
    verdicts += calculator.verdicts("calculator", "model", tolerances, hint=CALCULATOR_HINT)
    verdicts += [
        judge("inputs", "fields changed", len(found.changed), 0,
              hint="prediction changed its inputs: " + _listed(found.changed)),
        judge("outputs", "shape/dtype errors", len(found.errors), 0, hint=_listed(found.errors)),
        judge("outputs", "non-finite values", found.non_finite, 0,
              hint="the model gives NaN/inf for these structures"),
    ]  # fmt: skip
    not_applicable = {(s.check, s.quantity) for s in skipped}
    verdicts += _worst(
        [v for result in gradients for v in result.verdicts(tolerances)
         if (v.check, v.quantity) not in not_applicable]
    )  # fmt: skip
    verdicts += _worst(
        [v for result in symmetry for v in result.verdicts(tolerances)
         if v.check in ("translation", "permutation")]
    )  # fmt: skip
    return tuple(verdicts)


def _agreement(reference: list[StructureOutput], other: list[StructureOutput]) -> Agreement:
    """Largest differences of ``other`` from ``reference`` (stress where both have it)."""
    energies, forces, stresses = [], [], []
    for ref, out in zip(reference, other):
        energies.append(abs(out.energy - ref.energy) / max(len(ref.computed_forces), 1))
        forces.append(_largest(out.computed_forces, ref.computed_forces, rows=True))
        if ref.stress is not None and out.stress is not None:
            stresses.append(_largest(out.stress, ref.stress, rows=False))
    per_atom = [abs(r.energy) / max(len(r.computed_forces), 1) for r in reference]
    force_norms = [nan_max(np.linalg.norm(r.computed_forces, axis=-1)) for r in reference]
    stress_sizes = [nan_max(np.abs(r.stress).ravel()) for r in reference if r.stress is not None]
    return Agreement(
        energy_per_atom=nan_max(energies),
        force=nan_max(forces),
        stress=nan_max(stresses) if stresses else None,
        energy_scale=max(nan_max(per_atom), ENERGY_FLOOR_PER_ATOM),
        force_scale=max(nan_max(force_norms), FORCE_FLOOR),
        stress_scale=max(nan_max(stress_sizes), STRESS_FLOOR),
    )


def _largest(a: np.ndarray, b: np.ndarray, *, rows: bool) -> float:
    """Largest |a - b| element (per-row norm if ``rows``); NaN if the shapes differ."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.nan
    difference = np.abs(a - b) if not rows else np.linalg.norm(a - b, axis=-1)
    return nan_max(difference.ravel())


def _worst(verdicts: list[Verdict]) -> list[Verdict]:
    """One verdict per (check, quantity): a failing one, else the closest to its limit."""
    worst: dict[tuple[str, str], Verdict] = {}
    for verdict in verdicts:
        key = (verdict.check, verdict.quantity)
        if key not in worst or _severity(verdict) > _severity(worst[key]):
            worst[key] = verdict
    return list(worst.values())


def _severity(verdict: Verdict) -> float:
    if not verdict.passed:
        return math.inf
    return abs(verdict.value) / verdict.limit if verdict.limit > 0 else 0.0


def _voigt(stress: np.ndarray | None) -> np.ndarray | None:
    return None if stress is None else full_3x3_to_voigt_6_stress(np.asarray(stress))


def _listed(items: list[str], limit: int = 5) -> str:
    more = f" (and {len(items) - limit} more)" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more
