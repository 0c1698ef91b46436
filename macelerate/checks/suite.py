"""Run every physical check on one structure and collect the numbers in one report.

With ``CheckConfig.conformance`` (on in ``macelerate check``) the report also holds the
conformance checks that the physical ones do not already cover
(:mod:`macelerate.checks.conformance`: batched equals single, inputs unchanged, Calculator equals
model, output shapes and dtypes), run on the structure plus two built-in ones.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import covalent_radii
from tqdm import tqdm

from macelerate._dtypes import dtype_name
from macelerate.checks.conformance import (
    ConformanceConfig,
    ConformanceReport,
    check_potential,
    default_structures,
)
from macelerate.checks.equigrad import EquigradResult, check_equigrad
from macelerate.checks.gradients import GradientResult, check_gradients
from macelerate.checks.nve import NVEResult, check_nve
from macelerate.checks.smoothness import SmoothnessResult, check_smoothness
from macelerate.checks.symmetry import SymmetryResult, check_symmetry
from macelerate.checks.thresholds import TOLERANCES, Judged, Tolerances, Verdict, tolerances_for
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class CheckConfig:
    """Settings of :func:`run_checks`.

    Attributes:
        n_rotations: proper and improper random rotations each.
        gradient_samples: (atom, direction) pairs for finite-difference forces.
        fd_step: finite-difference displacement in Å (and strain step); None: the precision
            tier's (1e-4 in float64, 1e-2 in float32 and half precision).
        nve_steps: NVE steps; 0 skips the NVE check.
        nve_timestep_fs: NVE time step in fs.
        nve_temperature_k: initial NVE temperature in K.
        smoothness_points: structures along the smoothness path.
        smoothness_span: length of the smoothness path in Å.
        seed: random seed of every check.
        conformance: also run the conformance checks not covered above (about ten model calls
            on small structures; ``macelerate check`` turns it on unless ``--no-conformance``).
    """

    n_rotations: int = 3
    gradient_samples: int = 6
    fd_step: float | None = None
    nve_steps: int = 50
    nve_timestep_fs: float = 0.5
    nve_temperature_k: float = 300.0
    smoothness_points: int = 101
    smoothness_span: float = 0.2
    seed: int = 0
    conformance: bool = False


@dataclass(frozen=True)
class CheckReport(Judged):
    """Results of every check on one structure (each field documents its units).

    ``verdicts`` judge the numbers against ``tolerances`` (chosen for the model's precision
    tier); ``passed`` is true when every verdict passed. ``conformance`` is None when
    ``config.conformance`` is off; its verdicts are part of ``verdicts``.
    """

    structure: str
    n_atoms: int
    periodic: bool
    dtype: str
    symmetry: SymmetryResult
    equigrad: EquigradResult
    gradients: GradientResult
    nve: NVEResult | None
    smoothness: SmoothnessResult
    seconds: float
    config: CheckConfig = field(default_factory=CheckConfig)
    tolerances: Tolerances = TOLERANCES["float64"]
    verdicts: tuple[Verdict, ...] = ()
    conformance: ConformanceReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready numbers (with ``symmetry.max_relative`` and the overall ``passed``)."""
        conformance = None if self.conformance is None else self.conformance.to_dict()
        return {
            **asdict(self),
            "symmetry": self.symmetry.to_dict(),
            "conformance": conformance,
            "passed": self.passed,
        }

    def verdict(self, check: str, quantity: str) -> Verdict | None:
        """The verdict of one row of :meth:`rows`, or None if that number is not judged."""
        for verdict in self.verdicts:
            if (verdict.check, verdict.quantity) == (check, quantity):
                return verdict
        return None

    def rows(self) -> list[tuple[str, str, float, str]]:
        """(check, quantity, value, unit) rows for a table; quantities not computed are left out."""
        rows: list[tuple[str, str, float | None, str]] = []
        for name in ("rotation", "reflection", "translation", "permutation"):
            family = getattr(self.symmetry, name)
            rows += [
                (name, "energy error", family.energy_abs, "eV"),
                (name, "energy error (rel)", family.energy_rel, ""),
                (name, "force error (rel)", family.force_rel, ""),
                (name, "stress error (rel)", family.stress_rel, ""),
            ]
        rows += [
            ("equigrad", "||dE/dG||", self.equigrad.norm, "eV"),
            ("equigrad", "||dE/dG|| (rel)", self.equigrad.relative, ""),
            ("finite diff", "force error", self.gradients.force_abs, "eV/Å"),
            ("finite diff", "force error (rel)", self.gradients.force_rel, ""),
            ("finite diff", "stress error (rel)", self.gradients.stress_rel, ""),
        ]
        if self.nve is not None:
            rows += [
                ("nve", "drift", self.nve.drift_mev_per_atom_ps, "meV/atom/ps"),
                ("nve", "fluctuation", self.nve.fluctuation_mev_per_atom, "meV/atom"),
                ("nve", "final temperature", self.nve.final_temperature_k, "K"),
            ]
        rows += [
            ("smoothness", "max |dE|/step", self.smoothness.max_energy_slope, "eV/Å"),
            ("smoothness", "max |dF|", self.smoothness.max_force_jump, "eV/Å"),
            ("smoothness", "energy jump / median", self.smoothness.energy_ratio, ""),
            ("smoothness", "force jump / median", self.smoothness.force_ratio, ""),
        ]
        if self.conformance is not None:
            rows += self.conformance.rows()
        return [
            (check, name, value, unit) for check, name, value, unit in rows if value is not None
        ]


def default_structure(atomic_numbers: list[int], *, seed: int = 0) -> Atoms:
    """A small rattled, slightly sheared periodic cell made of the model's elements.

    Eight sites (27 when the model has more than eight elements) on a simple cubic grid spaced by
    about a bond length (1.9-3.0 Å from covalent radii), elements assigned in turn and shuffled,
    the cell sheared by up to about 5% and positions rattled by 0.1 Å.

    Args:
        atomic_numbers: the model's elements (the first 8 or 27 are used).
        seed: random seed of the shear, the element order and the rattle.
    """
    rng = np.random.default_rng(seed)
    n_side = 2 if len(atomic_numbers) <= 8 else 3
    n_sites = n_side**3
    elements = list(atomic_numbers)[:n_sites]
    numbers = rng.permutation([elements[i % len(elements)] for i in range(n_sites)])
    spacing = float(np.clip(2.3 * np.mean(covalent_radii[elements]), 1.9, 3.0))
    shear = rng.normal(scale=0.03, size=(3, 3))
    cell = n_side * spacing * (np.eye(3) + 0.5 * (shear + shear.T))
    grid = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = (grid / n_side) @ cell + rng.normal(scale=0.1, size=(n_sites, 3))
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)


def _advance(bar: tqdm, next_stage: str) -> None:
    bar.update(1)
    bar.set_postfix_str(next_stage)


def run_checks(
    potential: Potential,
    atoms: Atoms,
    *,
    config: CheckConfig | None = None,
    structure: str = "built-in",
    tolerances: Tolerances | None = None,
    progress: bool = False,
) -> CheckReport:
    """Symmetry, equigrad, finite-difference, NVE and smoothness checks of one structure.

    Args:
        potential: the model (float64 for the symmetry and gradient checks to be meaningful).
        atoms: the structure (never modified).
        config: check settings.
        structure: a name for the structure, recorded in the report.
        tolerances: pass limits; default: those of the model's precision tier
            (:func:`~macelerate.checks.thresholds.tolerances_for`).
        progress: show a progress bar over the checks (on stderr).

    Returns:
        A :class:`CheckReport` with a verdict per judged number. The NVE check is skipped for
        fewer than 2 atoms (no dynamics).
    """
    config = config or CheckConfig()
    tolerances = tolerances or tolerances_for(potential)
    run_nve = config.nve_steps > 0 and len(atoms) > 1
    later = [*["conformance"] * config.conformance, *["NVE"] * run_nve, "done"]  # after smoothness
    bar = tqdm(total=3 + len(later), disable=not progress, desc="checks", unit="check")
    start = time.perf_counter()
    with bar:
        bar.set_postfix_str("symmetry")
        symmetry = check_symmetry(
            potential, atoms, n_rotations=config.n_rotations, seed=config.seed
        )
        _advance(bar, "equigrad")
        equigrad = check_equigrad(potential, atoms)
        _advance(bar, "finite differences")
        gradients = check_gradients(
            potential, atoms, n_samples=config.gradient_samples, step=config.fd_step,
            strain_step=config.fd_step, seed=config.seed,
        )  # fmt: skip
        _advance(bar, "smoothness")
        smoothness = check_smoothness(
            potential, atoms, n_points=config.smoothness_points, span=config.smoothness_span
        )
        _advance(bar, later[0])
        conformance = None
        if config.conformance:
            conformance = _conformance(potential, atoms, config, tolerances)
            _advance(bar, later[1])
        nve = None
        if run_nve:
            nve = check_nve(
                potential, atoms, steps=config.nve_steps, timestep_fs=config.nve_timestep_fs,
                temperature_k=config.nve_temperature_k, seed=config.seed,
            )  # fmt: skip
            _advance(bar, "done")
    results = (symmetry, equigrad, gradients, nve, smoothness)
    verdicts = tuple(v for result in results if result is not None
                     for v in result.verdicts(tolerances))  # fmt: skip
    verdicts += conformance.verdicts if conformance is not None else ()
    return CheckReport(
        structure=structure,
        n_atoms=len(atoms),
        periodic=bool(atoms.pbc.all()),
        dtype=dtype_name(potential.dtype),
        symmetry=symmetry,
        equigrad=equigrad,
        gradients=gradients,
        nve=nve,
        smoothness=smoothness,
        seconds=time.perf_counter() - start,
        config=config,
        tolerances=tolerances,
        verdicts=verdicts,
        conformance=conformance,
    )


def _conformance(
    potential: Potential, atoms: Atoms, config: CheckConfig, tolerances: Tolerances
) -> ConformanceReport:
    """Conformance on ``atoms`` plus two built-in structures, without the checks run above."""
    others = default_structures(potential.atomic_numbers, seed=config.seed)[1:]
    settings = ConformanceConfig(finite_differences=False, symmetry=False, seed=config.seed)
    return check_potential(potential, [atoms, *others], config=settings, tolerances=tolerances)
