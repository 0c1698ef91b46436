"""Checks that turn bad structures into one clear error before a model sees them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

from macelerate.errors import StructureError, UnknownElementError

DEFAULT_MIN_DISTANCE = 0.2
"""Å. Atoms closer than this are treated as overlapping (no bonded pair is below ~0.6 Å)."""


def _label(index: int | None) -> str:
    return "structure" if index is None else f"structure {index}"


def check_structure(atoms: Atoms, *, index: int | None = None) -> None:
    """Raise :class:`StructureError` if ``atoms`` cannot be evaluated at all.

    Checks: at least one atom, finite positions and cell, and a non-degenerate cell along every
    periodic direction. Overlaps are checked on the neighbour list (:func:`check_min_distance`).
    """
    where = _label(index)
    if not isinstance(atoms, Atoms):
        raise StructureError(f"{where} is a {type(atoms).__name__}, not an ase.Atoms object")
    if len(atoms) == 0:
        raise StructureError(f"{where} is empty (0 atoms): give at least one atom")
    positions = atoms.positions
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        raise StructureError(
            f"{where} has NaN or infinite positions at atoms {bad[:10].tolist()}: "
            "check the integrator or input file that produced them"
        )
    cell = np.asarray(atoms.cell.array)
    if not np.isfinite(cell).all():
        raise StructureError(f"{where} has a NaN or infinite cell: set a finite cell")
    periodic = np.flatnonzero(atoms.pbc)
    if periodic.size:
        rows = cell[periodic]
        singular = np.linalg.svd(rows, compute_uv=False)
        if singular.min() < 1e-6 * max(1.0, float(singular.max())):
            raise StructureError(
                f"{where} is periodic along {['abc'[i] for i in periodic]} but its cell has zero "
                f"volume there (cell rows {rows.tolist()}): set a proper cell, or set pbc=False "
                "for a molecule"
            )


def check_min_distance(
    lengths: np.ndarray, edge_index: np.ndarray, *, min_distance: float | None, index: int | None
) -> None:
    """Raise :class:`StructureError` if any edge is shorter than ``min_distance`` Å."""
    if min_distance is None or lengths.size == 0:
        return
    shortest = int(np.argmin(lengths))
    if lengths[shortest] < min_distance:
        sender, receiver = edge_index[:, shortest]
        raise StructureError(
            f"{_label(index)} has overlapping atoms {sender} and {receiver} at "
            f"{lengths[shortest]:.3g} Å (< min_distance={min_distance} Å): fix the geometry, or "
            "pass min_distance=None to evaluate it anyway"
        )


def one_hot_indices(
    numbers: np.ndarray, z_table: Sequence[int], *, index: int | None = None
) -> np.ndarray:
    """Map atomic numbers to their positions in ``z_table``.

    Args:
        numbers: [n_atoms] atomic numbers.
        z_table: the model's elements, in the order of its one-hot node attributes.

    Returns:
        [n_atoms] int64 column indices into the one-hot node attributes.
    """
    lookup = np.full(max(max(z_table), int(numbers.max())) + 1, -1, dtype=np.int64)
    lookup[np.asarray(z_table, dtype=np.int64)] = np.arange(len(z_table))
    columns = lookup[numbers]
    if (columns < 0).any():
        unknown = sorted({int(z) for z in numbers[columns < 0]})
        names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in unknown)
        known = ", ".join(chemical_symbols[z] for z in z_table)
        raise UnknownElementError(
            f"{_label(index)} contains {names}, which the model does not know; it was trained on "
            f"{known}. Use a model trained on these elements, or remove those atoms."
        )
    return columns
