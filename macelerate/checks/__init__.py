"""Physical checks of a Potential: symmetry, equigrad, finite differences, NVE drift, smoothness.

:func:`check_potential` checks the contract of a Potential and its Calculator (batched equals
single, inputs unchanged, Calculator equals model, output shapes, forces = -∇E, invariances);
the part the physical checks do not cover also runs in :func:`run_checks` with
``CheckConfig(conformance=True)`` (on in ``macelerate check``).

Each check is a function that returns a frozen dataclass of numbers with a ``verdicts(tolerances)``
method; :func:`run_checks` runs them all on one structure and judges every number against the
limits of the model's precision tier (:mod:`macelerate.checks.thresholds`; ``macelerate check``
on the command line, which exits with status 1 when a check fails).

Names are imported eagerly: ``equigrad`` is both a function and a submodule, which a lazy
re-export could not tell apart.
"""

from __future__ import annotations

from macelerate.checks.conformance import (
    ConformanceConfig,
    ConformanceReport,
    check_potential,
    default_structures,
)
from macelerate.checks.equigrad import (
    EquigradResult,
    check_equigrad,
    equigrad,
    equigrad_norm,
    graph_equigrad_norm,
    potential_energy_fn,
)
from macelerate.checks.gradients import GradientResult, check_gradients
from macelerate.checks.nve import NVEResult, check_nve, energy_fluctuation, fit_drift
from macelerate.checks.smoothness import SmoothnessResult, check_smoothness
from macelerate.checks.suite import CheckConfig, CheckReport, default_structure, run_checks
from macelerate.checks.symmetry import SymmetryResult, TransformErrors, check_symmetry
from macelerate.checks.thresholds import (
    TOLERANCES,
    Tolerances,
    Verdict,
    judge,
    precision_tier,
    tolerances_for,
)

__all__ = [
    "TOLERANCES",
    "CheckConfig",
    "CheckReport",
    "ConformanceConfig",
    "ConformanceReport",
    "EquigradResult",
    "GradientResult",
    "NVEResult",
    "SmoothnessResult",
    "SymmetryResult",
    "Tolerances",
    "TransformErrors",
    "Verdict",
    "check_equigrad",
    "check_gradients",
    "check_nve",
    "check_potential",
    "check_smoothness",
    "check_symmetry",
    "default_structure",
    "default_structures",
    "energy_fluctuation",
    "equigrad",
    "equigrad_norm",
    "fit_drift",
    "graph_equigrad_norm",
    "judge",
    "potential_energy_fn",
    "precision_tier",
    "run_checks",
    "tolerances_for",
]
