"""Accuracy of a Potential against reference labels: energies, forces and stress."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms

from macelerate.data.labels import LabelKeys, stack_labels
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class StructureErrors:
    """Errors of one structure: energy per atom (meV/atom), force MAE and RMSE (meV/Å)."""

    index: int
    n_atoms: int
    energy_error_per_atom: float | None
    force_mae: float | None
    force_rmse: float | None


@dataclass(frozen=True)
class AccuracyReport:
    """Dataset-level errors; energies in meV/atom, forces in meV/Å, stress in meV/Å³."""

    n_structures: int
    n_atoms: int
    energy_mae: float | None
    energy_rmse: float | None
    force_mae: float | None
    force_rmse: float | None
    stress_mae: float | None
    stress_rmse: float | None
    structures: list[StructureErrors]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mae_rmse(errors: np.ndarray) -> tuple[float, float]:
    return float(np.abs(errors).mean()), float(np.sqrt((errors**2).mean()))


def evaluate(
    potential: Potential,
    structures: Sequence[Atoms],
    *,
    keys: LabelKeys | None = None,
    batch_size: int = 8,
    source: str = "<structures>",
) -> AccuracyReport:
    """Compare predictions of ``potential`` with the labels named by ``keys``.

    Raises:
        DataFileError: a structure lacks a requested label (checked before any model call).
    """
    keys = keys or LabelKeys()
    energies = stack_labels(structures, keys.energy, path=source) if keys.energy else None
    forces = stack_labels(structures, keys.forces, path=source) if keys.forces else None
    stresses = stack_labels(structures, keys.stress, path=source) if keys.stress else None
    pred_e, pred_f, pred_s = [], [], []
    for start in range(0, len(structures), batch_size):
        chunk = list(structures[start : start + batch_size])
        prediction = potential.predict(chunk, compute_stress=stresses is not None)
        pred_e.extend(prediction.energy)
        pred_f.extend(np.split(prediction.forces, prediction.ptr[1:-1]))
        if prediction.stress is not None:
            pred_s.extend(prediction.stress)
    n_atoms = np.array([len(atoms) for atoms in structures])
    rows, e_err, f_err = [], [], []
    for i, atoms in enumerate(structures):
        de = None if energies is None else 1e3 * (pred_e[i] - float(energies[i])) / len(atoms)
        df = None if forces is None else 1e3 * (pred_f[i] - forces[i].reshape(-1, 3))
        if de is not None:
            e_err.append(de)
        if df is not None:
            f_err.append(df.ravel())
        fm, fr = _mae_rmse(df) if df is not None else (None, None)
        rows.append(StructureErrors(i, len(atoms), de, fm, fr))
    e_mae, e_rmse = _mae_rmse(np.array(e_err)) if e_err else (None, None)
    f_mae, f_rmse = _mae_rmse(np.concatenate(f_err)) if f_err else (None, None)
    s_mae = s_rmse = None
    if stresses is not None:
        from ase.stress import voigt_6_to_full_3x3_stress

        ref = np.stack(
            [s.reshape(3, 3) if s.size == 9 else voigt_6_to_full_3x3_stress(s) for s in stresses]
        )
        s_mae, s_rmse = _mae_rmse(1e3 * (np.stack(pred_s) - ref))
    return AccuracyReport(
        len(structures), int(n_atoms.sum()), e_mae, e_rmse, f_mae, f_rmse, s_mae, s_rmse, rows
    )
