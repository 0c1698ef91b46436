"""Equivariance of a Potential under rotations, reflections, translations and permutations.

Every transformed copy of the structure is evaluated and compared with what exact symmetry
predicts from the original: the same energy, forces ``F[order] @ R^T`` and stress
``R σ R^T``. Run it in float64 to separate the model's symmetry from rounding (float32 errors of
about 1e-6 relative are rounding, not broken symmetry).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms

from macelerate._dtypes import dtype_name
from macelerate.checks._batching import StructureOutput, nan_max, predict_each, ratio
from macelerate.checks.thresholds import (
    ENERGY_FLOOR_PER_ATOM,
    FORCE_FLOOR,
    STRESS_FLOOR,
    Tolerances,
    Verdict,
    judge,
)
from macelerate.graph.rotation import rotation_matrix
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class TransformErrors:
    """Largest deviations from exact symmetry over a family of transformed copies.

    Attributes:
        n_copies: transformed copies evaluated.
        energy_abs: max |E(Tx) - E(x)| in eV.
        energy_rel: ``energy_abs / max(|E(x)|, n_atoms x 1 eV)``.
        force_abs: max per-atom norm |F(Tx) - T F(x)| in eV/Å.
        force_rel: ``force_abs / max(largest per-atom force norm of the original, 1 eV/Å)``.
        stress_abs: max element |σ(Tx) - R σ(x) R^T| in eV/Å³ (None: not periodic in 3D).
        stress_rel: ``stress_abs / max(max |σ(x)| element, 0.01 eV/Å³)`` (None: not periodic).

    The floors (:mod:`macelerate.checks.thresholds`) keep relaxed structures, whose forces and
    stress are near zero, from being judged on rounding alone. NaN anywhere gives NaN here.
    """

    n_copies: int
    energy_abs: float
    energy_rel: float
    force_abs: float
    force_rel: float
    stress_abs: float | None
    stress_rel: float | None


@dataclass(frozen=True)
class SymmetryResult:
    """Symmetry errors of one structure (see :class:`TransformErrors`)."""

    rotation: TransformErrors
    reflection: TransformErrors
    translation: TransformErrors
    permutation: TransformErrors
    dtype: str

    @property
    def max_relative(self) -> float:
        """The largest relative error of any quantity under any transformation."""
        values = []
        for family in (self.rotation, self.reflection, self.translation, self.permutation):
            values += [family.energy_rel, family.force_rel]
            if family.stress_rel is not None:
                values.append(family.stress_rel)
        return nan_max(values)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "max_relative": self.max_relative}

    def verdicts(self, tolerances: Tolerances) -> list[Verdict]:
        """Energy, force and stress errors of every family against ``tolerances``."""
        verdicts = []
        for name in FAMILIES:
            family: TransformErrors = getattr(self, name)
            hint = f"{HINTS[name]}; in float32/half, run --dtype float64 to tell rounding apart"
            verdicts += [
                judge(name, "energy error (rel)", family.energy_rel,
                      tolerances.symmetry_energy_rel, hint=hint),
                judge(name, "force error (rel)", family.force_rel,
                      tolerances.symmetry_force_rel, hint=hint),
            ]  # fmt: skip
            if family.stress_abs is not None:
                verdicts.append(
                    judge(name, "stress error (rel)", family.stress_rel,
                          tolerances.symmetry_stress_rel, hint=hint)
                )  # fmt: skip
        return verdicts


FAMILIES = ("rotation", "reflection", "translation", "permutation")
HINTS = {
    "rotation": "the model is not rotation-equivariant (a term that uses absolute directions)",
    "reflection": "the model is not reflection-equivariant (a parity-odd term in the energy)",
    "translation": "the energy depends on absolute positions (a term in x_i, not x_i - x_j)",
    "permutation": "the result depends on the order of the atoms",
}


@dataclass(frozen=True)
class _Copy:
    """A transformed structure; exact symmetry predicts F' = F[order] @ rotation^T."""

    atoms: Atoms
    rotation: np.ndarray  # [3, 3]
    order: np.ndarray  # [n_atoms]: atom k of the copy is atom order[k] of the original


def rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with positions and cell rows mapped by ``rotation`` [3, 3]."""
    copy = atoms.copy()
    copy.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    copy.positions = atoms.positions @ rotation.T
    return copy


def improper_rotation(rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal [3, 3] matrix with determinant -1 (rotation times a mirror)."""
    return rotation_matrix(rng) @ np.diag([1.0, 1.0, -1.0])


def _families(
    atoms: Atoms, *, n_rotations: int, rng: np.random.Generator
) -> dict[str, list[_Copy]]:
    identity, order = np.eye(3), np.arange(len(atoms))
    proper = [rotation_matrix(rng) for _ in range(n_rotations)]
    improper = [improper_rotation(rng) for _ in range(n_rotations)]
    shifted = atoms.copy()
    shifted.positions = atoms.positions + rng.normal(scale=2.0, size=3)
    translation = [_Copy(shifted, identity, order)]
    if atoms.pbc.any():
        wrapped = shifted.copy()
        wrapped.wrap()
        translation.append(_Copy(wrapped, identity, order))
    permutation = rng.permutation(len(atoms))
    return {
        "rotation": [_Copy(rotated(atoms, r), r, order) for r in proper],
        "reflection": [_Copy(rotated(atoms, r), r, order) for r in improper],
        "translation": translation,
        "permutation": [_Copy(atoms[permutation], identity, permutation)],
    }


def _errors(
    reference: StructureOutput, copies: list[_Copy], outputs: list[StructureOutput]
) -> TransformErrors:
    reference_forces = reference.computed_forces  # [n_atoms, 3]
    n_atoms = len(reference_forces)
    energy_scale = max(abs(reference.energy), ENERGY_FLOOR_PER_ATOM * n_atoms)
    force_scale = max(float(np.linalg.norm(reference_forces, axis=1).max(initial=0.0)), FORCE_FLOOR)
    energies, forces, stresses = [], [], []  # NaN-propagating, unlike Python's max()
    for copy, out in zip(copies, outputs):
        energies.append(abs(out.energy - reference.energy))
        expected = reference_forces[copy.order] @ copy.rotation.T  # [n_atoms, 3]
        forces.append(nan_max(np.linalg.norm(out.computed_forces - expected, axis=1)))
        if reference.stress is not None:
            stress = copy.rotation @ reference.stress @ copy.rotation.T
            stresses.append(nan_max(np.abs(out.computed_stress - stress).ravel()))
    e_abs, f_abs = nan_max(energies), nan_max(forces)
    s_abs = s_rel = None
    if reference.stress is not None:
        s_abs = nan_max(stresses)
        s_rel = ratio(s_abs, max(nan_max(np.abs(reference.stress).ravel()), STRESS_FLOOR))
    return TransformErrors(
        n_copies=len(copies),
        energy_abs=e_abs,
        energy_rel=ratio(e_abs, energy_scale),
        force_abs=f_abs,
        force_rel=ratio(f_abs, force_scale),
        stress_abs=s_abs,
        stress_rel=s_rel,
    )


def check_symmetry(
    potential: Potential,
    atoms: Atoms,
    *,
    n_rotations: int = 3,
    seed: int = 0,
    batch_size: int = 4,
) -> SymmetryResult:
    """Energy, force and stress errors under symmetry operations of one structure.

    Families: ``n_rotations`` random proper rotations and as many improper ones (det -1), applied
    to positions and cell rows (``cell @ R^T``); one random translation of all atoms (plus its
    wrapped copy for periodic structures); one random permutation of the atoms. Stress is
    compared only for structures periodic in all three directions.

    Args:
        potential: the model (use a float64 one to see symmetry errors above rounding).
        atoms: the structure (never modified).
        n_rotations: proper and improper rotations drawn each.
        seed: random seed of the transformations.
        batch_size: structures per model call.

    Returns:
        A :class:`SymmetryResult`; an exactly equivariant float64 model gives relative errors
        of about 1e-14.
    """
    rng = np.random.default_rng(seed)
    families = _families(atoms, n_rotations=n_rotations, rng=rng)
    structures = [atoms] + [copy.atoms for copies in families.values() for copy in copies]
    outputs = predict_each(
        potential, structures, compute_stress=bool(atoms.pbc.all()), batch_size=batch_size
    )
    reference, position = outputs[0], 1
    errors = {}
    for name, copies in families.items():
        errors[name] = _errors(reference, copies, outputs[position : position + len(copies)])
        position += len(copies)
    return SymmetryResult(**errors, dtype=dtype_name(potential.dtype))
