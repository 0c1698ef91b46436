"""Forces and stress against central finite differences of the energy.

Forces: for a few random atoms ``i`` and unit directions ``d``,
``-F_i·d ≈ (E(x + h d e_i) - E(x - h d e_i)) / 2h``. Stress (structures periodic in 3D):
positions and cell rows are deformed by ``I + ε`` with a symmetric strain ``ε``, and
``σ_ab = (1/V) ∂E/∂ε_ab`` (ASE's sign convention, as the model's stress). Central differences
have truncation errors of order ``h²``; in float64 with ``h = 1e-4`` Å they agree with autograd
to about 1e-8 relative (float32 needs ``h`` near 1e-2 Å and agrees to about 1e-4..1e-2). The
energy's own rounding noise is measured too, so that a large float32 energy (whose rounding alone
can exceed the difference being measured) raises the pass limit instead of failing the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from macelerate.checks._batching import nan_max, predict_each, ratio
from macelerate.checks.thresholds import (
    FORCE_FLOOR,
    STRESS_FLOOR,
    Tolerances,
    Verdict,
    judge,
    tolerances_for,
)
from macelerate.models.potential import Potential

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclass(frozen=True)
class GradientResult:
    """Autograd forces and stress against finite differences.

    Attributes:
        n_samples: (atom, direction) pairs compared.
        force_abs: max |F·d - FD| in eV/Å.
        force_rel: ``force_abs / max(largest per-atom force norm, 1 eV/Å)``.
        stress_abs: max |σ_ab - FD| over the six components in eV/Å³ (None: not periodic).
        stress_rel: ``stress_abs / max(max |σ_ab|, 0.01 eV/Å³)`` (None: not periodic).
        step: displacement h in Å.
        strain_step: strain step (dimensionless).
        energy_noise: eV, the rounding noise of the energy, measured as the largest
            |E(x + δ) - E(x) + Σ_i F_i·δ_i| over a few random moves of every atom by 1e-3 h.
        force_floor_rel: the error that noise alone gives a central difference,
            ``3 * energy_noise / (2 h)``, relative like ``force_rel``; added to the pass limit.
        stress_floor_rel: the same for the stress, ``3 * energy_noise / (2 ε V)`` (None: not
            periodic).
    """

    n_samples: int
    force_abs: float
    force_rel: float
    stress_abs: float | None
    stress_rel: float | None
    step: float
    strain_step: float
    energy_noise: float = 0.0
    force_floor_rel: float = 0.0
    stress_floor_rel: float | None = None

    def verdicts(self, tolerances: Tolerances) -> list[Verdict]:
        """FD force (and stress) errors against the tier's limit plus the rounding floor."""
        force_hint = (
            "forces are not the negative gradient of the energy (a direct-force head, a "
            "detached term, or a bug); in float32/half run --dtype float64 to rule out rounding"
        )
        verdicts = [
            judge("finite diff", "force error (rel)", self.force_rel,
                  tolerances.fd_force_rel + self.force_floor_rel, hint=force_hint),
        ]  # fmt: skip
        if self.stress_abs is not None:
            stress_hint = "the stress is not the strain derivative of the energy"
            floor = self.stress_floor_rel or 0.0
            verdicts.append(
                judge("finite diff", "stress error (rel)", self.stress_rel,
                      tolerances.fd_stress_rel + floor, hint=stress_hint)
            )  # fmt: skip
        return verdicts


NOISE_FACTOR = 3.0
"""Safety factor on the measured energy noise: a few samples underestimate its largest value."""
NOISE_SAMPLES = 4
"""Displacements used to measure the energy's rounding noise."""


def displaced(atoms: Atoms, index: int, vector: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with atom ``index`` moved by ``vector`` [3] Å."""
    copy = atoms.copy()
    positions = atoms.positions.copy()
    positions[index] += vector
    copy.positions = positions
    return copy


def strained(atoms: Atoms, strain: np.ndarray) -> Atoms:
    """A copy with positions and cell rows mapped by ``I + strain`` ([3, 3], symmetric)."""
    deformation = np.eye(3) + strain
    copy = atoms.copy()
    copy.set_cell(atoms.cell.array @ deformation.T, scale_atoms=False)
    copy.positions = atoms.positions @ deformation.T
    return copy


def _unit_strain(a: int, b: int) -> np.ndarray:
    """Symmetric strain direction with dE/dt = V σ_ab for ε = t * direction."""
    direction = np.zeros((3, 3))
    direction[a, b] += 0.5
    direction[b, a] += 0.5
    return direction


def check_gradients(
    potential: Potential,
    atoms: Atoms,
    *,
    n_samples: int = 6,
    step: float | None = None,
    strain_step: float | None = None,
    seed: int = 0,
    batch_size: int = 8,
) -> GradientResult:
    """Compare autograd forces (and stress) with central finite differences of the energy.

    Args:
        potential: the model (float64 for meaningful differences at small steps).
        atoms: the structure (never modified).
        n_samples: random (atom, unit direction) pairs.
        step: displacement h in Å; default: the precision tier's
            (:func:`~macelerate.checks.thresholds.tolerances_for`): 1e-4 in float64, 1e-2 in
            float32 and half precision (the ``fp32`` preset included, whose positions are
            float64 but whose energy is rounded like float32's).
        strain_step: strain step for the six stress components (periodic structures only);
            default: the same number as ``step``.
        seed: random seed of atoms and directions.
        batch_size: structures per model call.

    Returns:
        A :class:`GradientResult`.
    """
    step = tolerances_for(potential).fd_step if step is None else step
    strain_step = step if strain_step is None else strain_step
    rng = np.random.default_rng(seed)
    indices = rng.integers(len(atoms), size=n_samples)
    directions = _unit_vectors(rng, n_samples)
    tiny = 1e-3 * step  # Å: moves every atom a little, to measure the energy's rounding noise
    jitters = tiny * _unit_vectors(rng, NOISE_SAMPLES * len(atoms)).reshape(-1, len(atoms), 3)
    periodic = bool(atoms.pbc.all())
    structures = [atoms] + [_moved(atoms, jitter) for jitter in jitters]
    for i, d in zip(indices, directions):  # pairs (+h, -h)
        structures += [displaced(atoms, i, step * d), displaced(atoms, i, -step * d)]
    if periodic:
        for a, b in VOIGT_PAIRS:
            strain = strain_step * _unit_strain(a, b)
            structures += [strained(atoms, strain), strained(atoms, -strain)]
    outputs = predict_each(potential, structures, compute_forces=False, batch_size=batch_size)
    energies = np.array([out.energy for out in outputs])
    reference = predict_each(potential, [atoms], compute_stress=periodic)[0]
    reference_forces = reference.computed_forces  # [n_atoms, 3] eV/Å
    predicted = -np.einsum("nk,snk->s", reference_forces, jitters)  # [NOISE_SAMPLES] eV
    noise = nan_max(np.abs(energies[1 : 1 + NOISE_SAMPLES] - energies[0] - predicted))
    pairs = energies[1 + NOISE_SAMPLES :]
    slopes = (pairs[0::2] - pairs[1::2]) / 2.0  # [n_samples (+ 6)] eV
    autograd = np.einsum("sk,sk->s", reference_forces[indices], directions)
    force_abs = nan_max(np.abs(autograd + slopes[:n_samples] / step))
    force_scale = max(nan_max(np.linalg.norm(reference_forces, axis=1)), FORCE_FLOOR)
    stress_abs = stress_rel = stress_floor = None
    if periodic:
        volume = atoms.get_volume()
        numeric = slopes[n_samples:] / strain_step / volume  # [6] eV/Å³
        analytic = np.array([reference.computed_stress[a, b] for a, b in VOIGT_PAIRS])
        stress_scale = max(nan_max(np.abs(analytic)), STRESS_FLOOR)
        stress_abs = nan_max(np.abs(analytic - numeric))
        stress_rel = ratio(stress_abs, stress_scale)
        stress_floor = float(NOISE_FACTOR * noise / (2 * strain_step * volume) / stress_scale)
    return GradientResult(
        n_samples=n_samples,
        force_abs=force_abs,
        force_rel=ratio(force_abs, force_scale),
        stress_abs=stress_abs,
        stress_rel=stress_rel,
        step=step,
        strain_step=strain_step,
        energy_noise=noise,
        force_floor_rel=float(NOISE_FACTOR * noise / (2 * step) / force_scale),
        stress_floor_rel=stress_floor,
    )


def _moved(atoms: Atoms, displacement: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with every atom moved by ``displacement`` [n_atoms, 3] Å."""
    copy = atoms.copy()
    copy.positions = atoms.positions + displacement
    return copy


def _unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    """[count, 3] random unit vectors."""
    vectors = rng.normal(size=(count, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
