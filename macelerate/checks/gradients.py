"""Forces and stress against central finite differences of the energy.

Forces: for a few random atoms ``i`` and unit directions ``d``,
``-F_i·d ≈ (E(x + h d e_i) - E(x - h d e_i)) / 2h``. Stress (structures periodic in 3D):
positions and cell rows are deformed by ``I + ε`` with a symmetric strain ``ε``, and
``σ_ab = (1/V) ∂E/∂ε_ab`` (ASE's sign convention, as the model's stress). Central differences
have truncation errors of order ``h²``; in float64 with ``h = 1e-4`` Å they agree with autograd
to about 1e-8 relative (float32 needs ``h`` near 1e-2 Å and agrees to about 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from macelerate.checks._batching import predict_each, ratio
from macelerate.models.potential import Potential

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


@dataclass(frozen=True)
class GradientResult:
    """Autograd forces and stress against finite differences.

    Attributes:
        n_samples: (atom, direction) pairs compared.
        force_abs: max |F·d - FD| in eV/Å.
        force_rel: ``force_abs`` / the largest per-atom force norm.
        stress_abs: max |σ_ab - FD| over the six components in eV/Å³ (None: not periodic).
        stress_rel: ``stress_abs`` / max |σ_ab| (None: not periodic).
        step: displacement h in Å.
        strain_step: strain step (dimensionless).
    """

    n_samples: int
    force_abs: float
    force_rel: float
    stress_abs: float | None
    stress_rel: float | None
    step: float
    strain_step: float


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
        step: displacement h in Å; default 1e-4 in float64 and 1e-2 in float32 (where the
            energy's rounding error, about 1e-7 |E|, would swamp a smaller step).
        strain_step: strain step for the six stress components (periodic structures only);
            default: the same number as ``step``.
        seed: random seed of atoms and directions.
        batch_size: structures per model call.

    Returns:
        A :class:`GradientResult`.
    """
    if step is None:
        step = 1e-4 if potential.dtype == torch.float64 else 1e-2
    strain_step = step if strain_step is None else strain_step
    rng = np.random.default_rng(seed)
    indices = rng.integers(len(atoms), size=n_samples)
    directions = rng.normal(size=(n_samples, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    periodic = bool(atoms.pbc.all())
    structures = []  # pairs (+h, -h)
    for i, d in zip(indices, directions):
        structures += [displaced(atoms, i, step * d), displaced(atoms, i, -step * d)]
    if periodic:
        for a, b in VOIGT_PAIRS:
            strain = strain_step * _unit_strain(a, b)
            structures += [strained(atoms, strain), strained(atoms, -strain)]
    outputs = predict_each(potential, structures, compute_forces=False, batch_size=batch_size)
    energies = [out.energy for out in outputs]
    slopes = (np.array(energies[0::2]) - np.array(energies[1::2])) / 2.0  # [n_samples (+ 6)]
    reference = predict_each(potential, [atoms], compute_stress=periodic)[0]
    autograd = np.einsum("sk,sk->s", reference.forces[indices], directions)
    force_errors = np.abs(autograd + slopes[:n_samples] / step)
    force_abs = float(force_errors.max(initial=0.0))
    force_scale = float(np.linalg.norm(reference.forces, axis=1).max(initial=0.0))
    stress_abs = stress_rel = None
    if periodic:
        numeric = slopes[n_samples:] / strain_step / atoms.get_volume()  # [6] eV/Å³
        analytic = np.array([reference.stress[a, b] for a, b in VOIGT_PAIRS])
        stress_abs = float(np.abs(analytic - numeric).max())
        stress_rel = ratio(stress_abs, float(np.abs(analytic).max()))
    return GradientResult(
        n_samples=n_samples,
        force_abs=force_abs,
        force_rel=ratio(force_abs, force_scale),
        stress_abs=stress_abs,
        stress_rel=stress_rel,
        step=step,
        strain_step=strain_step,
    )
