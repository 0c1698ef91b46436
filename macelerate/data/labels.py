"""Reading labelled structures (extended XYZ and anything ASE reads) with explicit label keys.

With ASE >= 3.23, header keys named ``energy``, ``forces``, ``stress`` and ``free_energy`` are moved
into a ``SinglePointCalculator``; other names (``QM_energy``, ``REF_forces``...) stay in
``atoms.info`` / ``atoms.arrays``. :func:`get_label` looks in all three places.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from macelerate.errors import DataFileError

CALCULATOR_KEYS = ("energy", "free_energy", "forces", "stress")


@dataclass(frozen=True)
class LabelKeys:
    """Names of the reference labels in a data file (``None``: not used)."""

    energy: str | None = "energy"
    forces: str | None = "forces"
    stress: str | None = None


def available_keys(atoms: Atoms) -> list[str]:
    """Every label name a structure carries (info, arrays and calculator results)."""
    keys = [k for k in atoms.info] + [k for k in atoms.arrays if k not in ("numbers", "positions")]
    if atoms.calc is not None:
        keys += list(getattr(atoms.calc, "results", {}))
    return sorted(set(keys))


def get_label(atoms: Atoms, key: str, *, index: int, path: str) -> np.ndarray | None:
    """The value of label ``key`` of one structure, or ``None`` if absent."""
    if key in atoms.info:
        return np.asarray(atoms.info[key], dtype=np.float64)
    if key in atoms.arrays:
        return np.asarray(atoms.arrays[key], dtype=np.float64)
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    if key in CALCULATOR_KEYS and key in results:
        return np.asarray(results[key], dtype=np.float64)
    return None


def require_label(atoms: Atoms, key: str, *, index: int, path: str) -> np.ndarray:
    """Like :func:`get_label`, but a missing label raises :class:`DataFileError` naming the fix."""
    value = get_label(atoms, key, index=index, path=path)
    if value is None:
        raise DataFileError(
            f"{path}: structure {index} has no '{key}' label; it has {available_keys(atoms)}. "
            "Pass the right key (e.g. --energy-key/--forces-key/--stress-key)."
        )
    return value


def read_structures(path: str | Path, *, index: str = ":") -> list[Atoms]:
    """All structures of a file ASE can read.

    Raises:
        DataFileError: the file is missing, unreadable or holds no structures.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFileError(f"data file {path} does not exist")
    try:
        structures = ase.io.read(str(path), index=index)
    except Exception as error:  # ASE raises many types for malformed files
        raise DataFileError(f"{path} could not be read as atomic structures ({error})") from error
    structures = structures if isinstance(structures, list) else [structures]
    if not structures:
        raise DataFileError(f"{path} holds no structures")
    return structures


def stack_labels(structures: Sequence[Atoms], key: str, *, path: str) -> list[np.ndarray]:
    """One label per structure; raises on the first structure that lacks it."""
    return [require_label(atoms, key, index=i, path=path) for i, atoms in enumerate(structures)]
