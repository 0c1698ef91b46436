"""Accuracy of a Potential against reference labels or another model: energy, forces, stress.

References come either from labels in the data (:class:`~macelerate.data.labels.LabelKeys`) or
from a reference Potential's predictions on the same structures (a teacher for a student, the
float64 model for a float32 one). Errors are reported in meV: energy per atom, forces per Cartesian
component (overall and per element), stress per tensor element.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols
from tqdm import tqdm

from macelerate.data.labels import (
    LabelKeys,
    energy_labels,
    forces_labels,
    stack_labels,
    stress_3x3,
)
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class StructureErrors:
    """Errors of one structure: energy per atom (meV/atom), forces (meV/Å), stress (meV/Å³)."""

    index: int
    n_atoms: int
    energy_error_per_atom: float | None
    force_mae: float | None
    force_rmse: float | None
    stress_mae: float | None = None


@dataclass(frozen=True)
class ElementErrors:
    """Force errors (meV/Å, per Cartesian component) on the atoms of one element."""

    n_atoms: int
    force_mae: float
    force_rmse: float


@dataclass(frozen=True)
class AccuracyReport:
    """Dataset-level errors; energies in meV/atom, forces in meV/Å, stress in meV/Å³.

    ``per_element`` maps element symbols (in order of atomic number) to force errors.
    """

    n_structures: int
    n_atoms: int
    energy_mae: float | None
    energy_rmse: float | None
    force_mae: float | None
    force_rmse: float | None
    stress_mae: float | None
    stress_rmse: float | None
    per_element: dict[str, ElementErrors]
    structures: list[StructureErrors]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class References:
    """Reference values per structure (each list None when not compared).

    Attributes:
        energy: total energies in eV.
        forces: [n_atoms_i, 3] forces in eV/Å per structure.
        stress: [3, 3] stress in eV/Å³ per structure (ASE sign convention).
    """

    energy: list[float] | None
    forces: list[np.ndarray] | None
    stress: list[np.ndarray] | None


def _mae_rmse(errors: np.ndarray) -> tuple[float, float]:
    return float(np.abs(errors).mean()), float(np.sqrt((errors**2).mean()))


def predict_batched(
    potential: Potential,
    structures: Sequence[Atoms],
    *,
    batch_size: int,
    compute_stress: bool,
    progress: bool = False,
    description: str = "model",
) -> References:
    """Predictions of ``potential`` for every structure, ``batch_size`` structures per call.

    Args:
        potential: the model.
        structures: the structures (never modified).
        batch_size: structures per model call.
        compute_stress: also predict stress (every structure periodic in 3D).
        progress: show a progress bar over the structures (on stderr).
        description: the bar's label.
    """
    energy: list[float] = []
    forces: list[np.ndarray] = []  # [n_atoms, 3] eV/Å per structure
    stress: list[np.ndarray] = []  # [3, 3] eV/Å³ per structure
    bar = tqdm(total=len(structures), disable=not progress, desc=description, unit="structure")
    with bar:
        for start in range(0, len(structures), batch_size):
            chunk = list(structures[start : start + batch_size])
            prediction = potential.predict(chunk, compute_stress=compute_stress)
            energy.extend(float(e) for e in prediction.energy)
            forces.extend(np.split(prediction.forces, prediction.ptr[1:-1]))
            if prediction.stress is not None:
                stress.extend(prediction.stress)
            bar.update(len(chunk))
    return References(energy, forces, stress if compute_stress else None)


def label_references(structures: Sequence[Atoms], keys: LabelKeys, *, source: str) -> References:
    """Reference labels named by ``keys``; a missing label raises ``DataFileError``."""
    energy = forces = stress = None
    if keys.energy:
        energy = energy_labels(structures, keys.energy, path=source)
    if keys.forces:
        forces = forces_labels(structures, keys.forces, path=source)
    if keys.stress:
        labels = stack_labels(structures, keys.stress, path=source)
        stress = [stress_3x3(s, index=i, path=source) for i, s in enumerate(labels)]
    return References(energy, forces, stress)


def _per_element(
    structures: Sequence[Atoms], force_errors: list[np.ndarray]
) -> dict[str, ElementErrors]:
    numbers = np.concatenate([atoms.numbers for atoms in structures])
    errors = np.concatenate(force_errors)  # [n_atoms, 3] meV/Å
    result = {}
    for z in np.unique(numbers):
        mae, rmse = _mae_rmse(errors[numbers == z])
        result[chemical_symbols[z]] = ElementErrors(int((numbers == z).sum()), mae, rmse)
    return result


def compare(
    structures: Sequence[Atoms], predicted: References, reference: References
) -> AccuracyReport:
    """Errors of ``predicted`` against ``reference`` (quantities missing in either are skipped)."""
    rows, e_err, f_err, s_err = [], [], [], []
    for i, atoms in enumerate(structures):
        de = df = ds = None
        if reference.energy is not None and predicted.energy is not None:
            de = 1e3 * (predicted.energy[i] - reference.energy[i]) / len(atoms)
            e_err.append(de)
        if reference.forces is not None and predicted.forces is not None:
            df = 1e3 * (predicted.forces[i] - reference.forces[i])  # [n_atoms, 3] meV/Å
            f_err.append(df)
        if reference.stress is not None and predicted.stress is not None:
            ds = 1e3 * (predicted.stress[i] - reference.stress[i])  # [3, 3] meV/Å³
            s_err.append(ds.ravel())
        fm, fr = _mae_rmse(df) if df is not None else (None, None)
        sm = float(np.abs(ds).mean()) if ds is not None else None
        rows.append(StructureErrors(i, len(atoms), de, fm, fr, sm))
    e_mae, e_rmse = _mae_rmse(np.array(e_err)) if e_err else (None, None)
    f_mae, f_rmse = _mae_rmse(np.concatenate(f_err)) if f_err else (None, None)
    s_mae, s_rmse = _mae_rmse(np.concatenate(s_err)) if s_err else (None, None)
    return AccuracyReport(
        n_structures=len(structures),
        n_atoms=int(sum(len(atoms) for atoms in structures)),
        energy_mae=e_mae,
        energy_rmse=e_rmse,
        force_mae=f_mae,
        force_rmse=f_rmse,
        stress_mae=s_mae,
        stress_rmse=s_rmse,
        per_element=_per_element(structures, f_err) if f_err else {},
        structures=rows,
    )


def evaluate(
    potential: Potential,
    structures: Sequence[Atoms],
    *,
    keys: LabelKeys | None = None,
    reference: Potential | None = None,
    batch_size: int = 8,
    source: str = "<structures>",
    progress: bool = False,
) -> AccuracyReport:
    """Errors of ``potential`` against the labels named by ``keys`` or against ``reference``.

    Args:
        potential: the model to evaluate.
        structures: the structures (never modified).
        keys: label names (ignored when ``reference`` is given); stress is compared only when
            ``keys.stress`` is set (Voigt-6, 9-vector or 3x3 labels, eV/Å³).
        reference: a model whose predictions replace the labels (energy, forces, and stress when
            every structure is periodic in all three directions).
        batch_size: structures per model call.
        source: name of the data used in error messages.
        progress: show progress bars over the structures (on stderr): one for ``reference``'s
            predictions, if any, and one for ``potential``'s.

    Returns:
        An :class:`AccuracyReport`.

    Raises:
        DataFileError: a structure lacks a requested label or has a malformed stress label
            (checked before any model call).
    """
    if reference is None:
        references = label_references(structures, keys or LabelKeys(), source=source)
        with_stress = references.stress is not None
    else:
        with_stress = all(bool(atoms.pbc.all()) for atoms in structures)
        references = predict_batched(
            reference, structures, batch_size=batch_size, compute_stress=with_stress,
            progress=progress, description="reference",
        )  # fmt: skip
    predicted = predict_batched(
        potential, structures, batch_size=batch_size, compute_stress=with_stress,
        progress=progress, description="model",
    )  # fmt: skip
    return compare(structures, predicted, references)
