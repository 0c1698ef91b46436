"""Reading labelled structures (extended XYZ and anything ASE reads) with explicit label keys.

With ASE >= 3.23, header keys named ``energy``, ``forces``, ``stress`` and ``free_energy`` are moved
into a ``SinglePointCalculator``; other names (``QM_energy``, ``REF_forces``...) stay in
``atoms.info`` / ``atoms.arrays``. :func:`get_label` looks in all three places, and every label it
returns is numeric and finite. A data file may carry ASE's index syntax (``FILE@5``, ``FILE@-1``,
``FILE@:20``, ``FILE@10:40:2``), see :mod:`macelerate.data.selection`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.stress import voigt_6_to_full_3x3_stress

from macelerate.data.selection import parse_data_path, select
from macelerate.errors import DataFileError

CALCULATOR_KEYS = ("energy", "free_energy", "forces", "stress")
MAX_ABS_ENERGY_PER_ATOM = 1e6
"""eV/atom beyond any total energy (all-electron energies of the heaviest atoms are ~1e5-1e6)."""


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


def _numeric(raw: object, key: str, *, index: int, path: str) -> np.ndarray:
    """``raw`` as a float64 array; strings, objects and non-finite values raise."""
    try:
        value = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as error:
        shown = repr(raw) if len(repr(raw)) <= 40 else repr(raw)[:37] + "..."
        raise DataFileError(
            f"{path}: structure {index} label '{key}' is not numeric ({shown}); pass the key "
            "of a numeric energy/forces/stress label (--energy-key/--forces-key/--stress-key)"
        ) from error
    if not np.isfinite(value).all():
        bad = int((~np.isfinite(value)).sum())
        raise DataFileError(
            f"{path}: structure {index} label '{key}' holds {bad} NaN/inf value(s); remove or "
            "repair that structure (or select good ones with FILE@START:STOP) and run again"
        )
    return value


def get_label(atoms: Atoms, key: str, *, index: int, path: str) -> np.ndarray | None:
    """The value of label ``key`` of one structure, or ``None`` if absent.

    Raises:
        DataFileError: the value is not numeric, or holds NaN or inf (naming structure and key).
    """
    results = getattr(atoms.calc, "results", {}) if atoms.calc is not None else {}
    if key in atoms.info:
        raw = atoms.info[key]
    elif key in atoms.arrays:
        raw = atoms.arrays[key]
    elif key in CALCULATOR_KEYS and key in results:
        raw = results[key]
    else:
        return None
    return _numeric(raw, key, index=index, path=path)


def require_label(atoms: Atoms, key: str, *, index: int, path: str) -> np.ndarray:
    """Like :func:`get_label`, but a missing label raises :class:`DataFileError` naming the fix."""
    value = get_label(atoms, key, index=index, path=path)
    if value is None:
        raise DataFileError(
            f"{path}: structure {index} has no '{key}' label; it has {available_keys(atoms)}. "
            "Pass the right key (e.g. --energy-key/--forces-key/--stress-key)."
        )
    return value


def energy_label(atoms: Atoms, key: str, *, index: int, path: str) -> float:
    """The total energy (eV) of one structure: a label holding exactly one number."""
    value = require_label(atoms, key, index=index, path=path)
    if value.size != 1:
        raise DataFileError(
            f"{path}: structure {index} label '{key}' has shape {value.shape}, but an energy "
            "label is one number per structure (eV); pass the energy's key with --energy-key"
        )
    return float(value.reshape(-1)[0])


def forces_label(atoms: Atoms, key: str, *, index: int, path: str) -> np.ndarray:
    """The forces [n_atoms, 3] (eV/Å) of one structure."""
    value = require_label(atoms, key, index=index, path=path)
    if value.size != 3 * len(atoms):
        raise DataFileError(
            f"{path}: structure {index} label '{key}' has shape {value.shape}; forces must be "
            f"[{len(atoms)}, 3] (eV/Å, one row per atom); pass the forces' key with --forces-key"
        )
    return value.reshape(len(atoms), 3)


def stress_3x3(value: np.ndarray, *, index: int, path: str) -> np.ndarray:
    """A stress label as [3, 3]: Voigt-6 (xx, yy, zz, yz, xz, xy), a 9-vector or a 3x3 array.

    Raises:
        DataFileError: any other shape.
    """
    value = np.asarray(value, dtype=np.float64)
    if value.size == 9:
        return value.reshape(3, 3)
    if value.size == 6:
        return voigt_6_to_full_3x3_stress(value.ravel())
    raise DataFileError(
        f"{path}: structure {index} has a stress label of shape {value.shape}; expected Voigt-6, "
        "a 9-vector or a 3x3 array (eV/Å³)"
    )


def warn_if_implausible_energies(
    energies: Sequence[float], n_atoms: Sequence[int], *, key: str, path: str
) -> None:
    """Warn (``UserWarning``) when energy labels look like something else than eV energies.

    Flags integer values that differ between structures (counts, steps, ids) and magnitudes
    beyond :data:`MAX_ABS_ENERGY_PER_ATOM` eV/atom.
    """
    values = np.asarray(energies, dtype=np.float64)
    if values.size >= 2 and np.all(values == np.round(values)) and np.ptp(values) > 0:
        warnings.warn(
            f"{path}: every '{key}' label is a whole number ({values[:3].tolist()}...); that "
            "looks like a count or an id, not an energy in eV. Check --energy-key.",
            UserWarning,
            stacklevel=2,
        )
    per_atom = np.abs(values) / np.maximum(np.asarray(n_atoms, dtype=np.float64), 1.0)
    if values.size and per_atom.max() > MAX_ABS_ENERGY_PER_ATOM:
        worst = int(per_atom.argmax())
        warnings.warn(
            f"{path}: structure {worst} label '{key}' is {values[worst]:.4g}, "
            f"{per_atom[worst]:.3g} eV/atom in magnitude; energies must be in eV. Check "
            "--energy-key and the unit of the data.",
            UserWarning,
            stacklevel=2,
        )


def energy_labels(structures: Sequence[Atoms], key: str, *, path: str) -> list[float]:
    """Total energies (eV) of all structures, checked by :func:`warn_if_implausible_energies`."""
    energies = [energy_label(a, key, index=i, path=path) for i, a in enumerate(structures)]
    warn_if_implausible_energies(energies, [len(a) for a in structures], key=key, path=path)
    return energies


def forces_labels(structures: Sequence[Atoms], key: str, *, path: str) -> list[np.ndarray]:
    """Forces [n_atoms, 3] (eV/Å) of all structures."""
    return [forces_label(a, key, index=i, path=path) for i, a in enumerate(structures)]


def read_structures(path: str | Path, *, index: str = ":") -> list[Atoms]:
    """The structures of a file ASE can read, optionally selected with ASE's ``FILE@INDEX``.

    Args:
        path: the file, optionally followed by ``@N`` (one structure; negative counts from the
            end) or ``@START:STOP[:STEP]`` (Python slice); an existing file whose name contains
            ``@`` is read whole.
        index: the selection when ``path`` carries none (same syntax, without the ``@``).

    Raises:
        DataFileError: the file is missing or unreadable, the index is malformed or out of
            range, or the selection holds no structures.
    """
    file, spec = parse_data_path(path)
    spec = index if spec is None else spec
    if not file.is_file():
        raise DataFileError(f"data file {file} does not exist; check the path")
    return select(file, spec, read=_read)


def _read(file: Path, index: str) -> list[Atoms]:
    try:
        # the index is ours to parse: ASE must not split the name at an "@" again
        structures = ase.io.read(file, index=index, do_not_split_by_at_sign=True)
    except (StopIteration, IndexError):
        if index.lstrip("-").isdigit():  # past the end: select() reports the valid range
            raise
        raise DataFileError(f"{file} could not be read as atomic structures") from None
    except Exception as error:  # ASE raises many types for malformed files
        raise DataFileError(f"{file} could not be read as atomic structures ({error})") from error
    return structures if isinstance(structures, list) else [structures]


def stack_labels(structures: Sequence[Atoms], key: str, *, path: str) -> list[np.ndarray]:
    """One label per structure; raises on the first structure that lacks it."""
    return [require_label(atoms, key, index=i, path=path) for i, atoms in enumerate(structures)]
