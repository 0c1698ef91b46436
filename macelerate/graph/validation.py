"""Checks that turn bad structures into one clear error before a model sees them."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from macelerate._dtypes import dtype_name
from macelerate.errors import PrecisionLossWarning, StructureError, UnknownElementError

DEFAULT_MIN_DISTANCE = 0.2
"""Å. Atoms closer than this are treated as overlapping (no bonded pair is below ~0.6 Å)."""
MAX_PERIODIC_IMAGES = 100_000
"""Periodic images of the cell a cutoff sphere may reach (product over periodic directions of
``2 ceil(cutoff / width) + 1``); more means a cell too small for its cutoff (vesin's cell list
would allocate gigabytes). A 6 Å cutoff stays below it down to 0.5 Å wide cells (15,625 images)."""
POSITION_RESOLUTION = 1e-4
"""Å. Coordinates that a float dtype rounds by more than this trigger a PrecisionLossWarning."""


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


def periodic_widths(cell: np.ndarray, pbc: np.ndarray) -> dict[int, float]:
    """Perpendicular width (Å) of the cell along each periodic direction.

    The width along lattice vector ``a_i`` is its distance from the span of the other periodic
    vectors (for three periodic directions: ``V / |a_j x a_k|``, the spacing of lattice planes);
    an atom's periodic images are at least this far apart.

    Args:
        cell: [3, 3] lattice vectors as rows, Å.
        pbc: [3] periodicity per direction.

    Returns:
        ``{direction index: width}`` for the periodic directions.
    """
    cell = np.asarray(cell, dtype=np.float64)
    periodic = [int(i) for i in np.flatnonzero(pbc)]
    widths = {}
    for i in periodic:
        others = cell[[j for j in periodic if j != i]]  # [n_other, 3]
        vector = cell[i]
        if len(others):
            coefficients = np.linalg.lstsq(others.T, vector, rcond=None)[0]
            vector = vector - others.T @ coefficients  # the part normal to the other vectors
        widths[i] = float(np.linalg.norm(vector))
    return widths


def check_cell_widths(
    cell: np.ndarray,
    pbc: np.ndarray,
    *,
    cutoff: float,
    min_distance: float | None,
    index: int | None = None,
) -> None:
    """Raise :class:`StructureError` for a periodic cell too thin for its cutoff or min_distance.

    Runs before any neighbour list: a cell a fraction of an Å wide (units mixed up, a cell left
    at a placeholder) makes a cutoff sphere reach millions of periodic images, and the
    neighbour-list library would allocate gigabytes and may crash.

    Args:
        cell: [3, 3] lattice vectors as rows, Å.
        pbc: [3] periodicity per direction.
        cutoff: neighbour cutoff, Å.
        min_distance: Å; a width below it means every atom overlaps its own images. None: only
            the image count is checked.
        index: the structure's place in a batch, for the message.
    """
    widths = periodic_widths(cell, pbc)
    if not widths:
        return
    axis, width = min(widths.items(), key=lambda item: item[1])
    where, name = _label(index), "abc"[axis]
    fix = "give the cell in Å (not nm or fractional units), or set pbc=False for a molecule"
    if min_distance is not None and width < min_distance:
        raise StructureError(
            f"{where} has a periodic cell only {width:.3g} Å wide along {name} (the spacing of "
            f"its lattice planes), less than min_distance={min_distance} Å: every atom would "
            f"overlap its own periodic images; {fix}"
        )
    images = 1.0
    for value in widths.values():
        images *= 2 * np.ceil(cutoff / max(value, 1e-300)) + 1
    if images > MAX_PERIODIC_IMAGES:
        raise StructureError(
            f"{where} has a periodic cell only {width:.3g} Å wide along {name}, so the "
            f"{cutoff:g} Å cutoff reaches {images:.3g} periodic images of each atom (at most "
            f"{MAX_PERIODIC_IMAGES:,} are allowed; building the neighbour list would take "
            f"huge memory); {fix}, or repeat a genuinely small cell (atoms.repeat) to widen it"
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


def warn_if_rounded(coordinates: np.ndarray, *, dtype: torch.dtype, stacklevel: int = 3) -> None:
    """Warn (:class:`PrecisionLossWarning`) when ``dtype`` rounds ``coordinates`` by > 1e-4 Å.

    A float dtype keeps a fixed number of significant digits: float32 rounds a coordinate of
    1e6 Å to 0.06 Å, and edge vectors formed from rounded positions lose that much (forces by
    ~64 meV/Å at 1e6 Å). The bound used is ``eps(dtype) * max |coordinate|``.

    Args:
        coordinates: [n, 3] positions (and shift vectors), Å, as float64.
        dtype: the floating dtype the graph will hold them in.
        stacklevel: passed to :func:`warnings.warn`.
    """
    if not dtype.is_floating_point or dtype == torch.float64 or coordinates.size == 0:
        return
    largest = float(np.abs(coordinates).max())
    resolution = torch.finfo(dtype).eps * largest
    if resolution > POSITION_RESOLUTION:
        name = dtype_name(dtype)
        warnings.warn(
            f"coordinates reach {largest:.3g} Å, which {name} rounds by up to {resolution:.2g} Å, "
            "so edge vectors and forces lose that much precision; use precision='fp32' "
            "(float64 positions, float32 network; --precision fp32 on the command line), or move "
            "the structure near the origin (atoms.positions -= atoms.positions.mean(axis=0) for a "
            "molecule, atoms.wrap() for a crystal)",
            PrecisionLossWarning,
            stacklevel=stacklevel,
        )
