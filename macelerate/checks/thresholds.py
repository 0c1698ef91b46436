"""Pass limits of the physical checks, per precision tier, and the verdicts they give.

A model is judged against what its arithmetic can deliver. Three tiers:

* ``"float64"``: the whole model in float64. An exact MACE is equivariant to ~1e-14 relative;
  a float64 evaluation of a model saved in float32 (its Clebsch-Gordan tables rounded) to ~1e-8.
* ``"float32"``: mace-style float32 or the ``fp32``/``tf32`` presets on CPU. Rounding gives
  ~1e-5 relative symmetry errors and finite differences need a 0.01 Å step.
* ``"half"``: any bfloat16/float16 block, or TF32 matmuls on a GPU: ~1e-3..1e-2 relative.

The limits below sit 10-100x above the values measured on real models (README, "Physical checks"
and "Precision policies"): float64 rotation F rel 1.6e-14 (GST) and 1.9e-8 (GO-MACE, float32
tables); float32 2.1e-5; half presets up to 1.4e-2. FD forces float64 3.2e-8..3.6e-8
(h = 1e-4 Å), float32 6.7e-3..1.7e-2 (h = 0.01 Å, the GO-MACE value set by the rounding of a
34,000 eV float32 energy). NVE drift float64/float32 at most 0.085 meV/atom/ps; bf16 presets up to
6.6. Half precision rounds activations, so its energy is not smooth on the 0.01 Å scale and its
autograd forces differ from finite differences by ~2-30 % of the largest force on the tiny test
model (bf16-linear 8 %, bf16-mixed 32 %): the half-tier FD limit of 20 % lets the linear presets
pass and fails bf16-mixed, which also fails the NVE limit (-42 meV/atom/ps there).

Relative errors are taken against scales with floors (:data:`FORCE_FLOOR` ...) so that a relaxed
structure, whose forces are near zero, is not judged on rounding alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Tier = Literal["float64", "float32", "half"]

ENERGY_FLOOR_PER_ATOM = 1.0
"""eV per atom: energy errors are relative to max(|E|, n_atoms x this)."""
FORCE_FLOOR = 1.0
"""eV/Å: force errors are relative to max(largest per-atom force, this)."""
STRESS_FLOOR = 0.01
"""eV/Å³ (1.6 GPa): stress errors are relative to max(largest stress element, this)."""
EQUIGRAD_FLOOR_PER_ATOM = 1.0
"""eV per atom (1 eV/Å x 1 Å): equigrad is relative to max(Σ|F_i||x_i - x̄|, n_atoms x this)."""


@dataclass(frozen=True)
class Tolerances:
    """Pass limits of every check for one precision tier (relative limits are dimensionless).

    Attributes:
        tier: ``"float64"``, ``"float32"`` or ``"half"``.
        symmetry_energy_rel: energy error under rotations, reflections, translations and
            permutations, relative to max(|E|, n_atoms eV).
        symmetry_force_rel: per-atom force error, relative to max(max|F|, 1 eV/Å).
        symmetry_stress_rel: stress error, relative to max(max|σ|, 0.01 eV/Å³).
        equigrad_rel: ||∂E/∂G|| relative to max(Σ|F_i||x_i - x̄|, n_atoms eV).
        fd_step: finite-difference displacement (Å) and strain step.
        fd_force_rel: FD force error, relative to max(max|F|, 1 eV/Å), on top of the measured
            rounding floor of the energy (see :class:`~macelerate.checks.gradients.GradientResult`).
        fd_stress_rel: FD stress error, relative to max(max|σ|, 0.01 eV/Å³), on top of the floor.
        nve_drift: largest |fitted drift| of an NVE run, meV/atom/ps.
        smoothness_ratio: largest step-to-step jump over the median step (energy and forces).
    """

    tier: str
    symmetry_energy_rel: float
    symmetry_force_rel: float
    symmetry_stress_rel: float
    equigrad_rel: float
    fd_step: float
    fd_force_rel: float
    fd_stress_rel: float
    nve_drift: float
    smoothness_ratio: float


TOLERANCES: dict[str, Tolerances] = {
    "float64": Tolerances(
        tier="float64", symmetry_energy_rel=1e-8, symmetry_force_rel=1e-6,
        symmetry_stress_rel=1e-6, equigrad_rel=1e-6, fd_step=1e-4, fd_force_rel=1e-5,
        fd_stress_rel=1e-4, nve_drift=1.0, smoothness_ratio=20.0,
    ),
    "float32": Tolerances(
        tier="float32", symmetry_energy_rel=1e-5, symmetry_force_rel=1e-3,
        symmetry_stress_rel=1e-3, equigrad_rel=1e-3, fd_step=1e-2, fd_force_rel=5e-2,
        fd_stress_rel=5e-2, nve_drift=1.0, smoothness_ratio=20.0,
    ),
    "half": Tolerances(
        tier="half", symmetry_energy_rel=1e-2, symmetry_force_rel=1e-1,
        symmetry_stress_rel=1e-1, equigrad_rel=1e-1, fd_step=1e-2, fd_force_rel=2e-1,
        fd_stress_rel=2e-1, nve_drift=10.0, smoothness_ratio=20.0,
    ),
}  # fmt: skip
"""Limits per tier. Why these numbers: see the module docstring."""

_HALF = (torch.float16, torch.bfloat16)


def precision_tier(potential) -> Tier:
    """The tier of a :class:`~macelerate.models.potential.Potential`: its weakest arithmetic.

    A precision policy counts by its lowest-precision block (TF32 matmuls on a GPU count as
    half); otherwise the model's dtype decides.
    """
    policy = getattr(potential, "precision", None)
    if policy is not None:
        from macelerate.precision.policy import dtype_fields

        dtypes = {policy.dtype(name) for name in dtype_fields()}
        on_gpu = torch.device(potential.device).type == "cuda"
        if dtypes & set(_HALF) or (policy.matmul_precision != "highest" and on_gpu):
            return "half"
        return "float32" if torch.float32 in dtypes else "float64"
    dtype = potential.dtype
    if dtype in _HALF:
        return "half"
    return "float64" if dtype == torch.float64 else "float32"


def tolerances_for(potential) -> Tolerances:
    """The :data:`TOLERANCES` of ``potential``'s :func:`precision_tier`."""
    return TOLERANCES[precision_tier(potential)]


@dataclass(frozen=True)
class Verdict:
    """One judged number of a check.

    Attributes:
        check: the check (``"rotation"``, ``"finite diff"``, ``"nve"`` ...).
        quantity: what was measured (``"force error (rel)"`` ...).
        value: the measured number (NaN when it could not be measured).
        limit: the largest value that passes (same unit as ``value``).
        unit: unit of ``value`` and ``limit`` (``""``: dimensionless).
        passed: ``value`` is finite and ``|value| <= limit``.
        hint: on failure, what the failure most likely means and what to do; else ``""``.
    """

    check: str
    quantity: str
    value: float
    limit: float
    unit: str
    passed: bool
    hint: str = ""


class Judged:
    """Mixin of reports that hold ``verdicts``: whether all passed, and which failed."""

    verdicts: tuple[Verdict, ...]

    @property
    def passed(self) -> bool:
        """True when every verdict passed."""
        return all(verdict.passed for verdict in self.verdicts)

    @property
    def failures(self) -> tuple[Verdict, ...]:
        """The verdicts that failed."""
        return tuple(verdict for verdict in self.verdicts if not verdict.passed)


def judge(
    check: str, quantity: str, value: float | None, limit: float, unit: str = "", *, hint: str
) -> Verdict:
    """A :class:`Verdict`: passes when ``value`` is finite and ``|value| <= limit``.

    ``None`` (not measured, e.g. because the run blew up) and NaN/inf fail.
    """
    number, limit = math.nan if value is None else float(value), float(limit)
    passed = bool(math.isfinite(number) and abs(number) <= limit)
    if not passed and not math.isfinite(number):
        hint = f"not a finite number ({number}): the model gives NaN/inf here. {hint}"
    return Verdict(check, quantity, number, limit, unit, passed, "" if passed else hint)
