"""Build the batched graph dictionary that mace-torch models consume, without AtomicData.

A graph batch is a ``dict[str, torch.Tensor]`` under mace-torch's key names:

=============== ========================== =========================================================
key             shape, dtype               meaning
=============== ========================== =========================================================
positions       [n_atoms, 3], float         Cartesian positions, Å
node_attrs      [n_atoms, n_elements], flt  one-hot element over the model's ``z_table``
atomic_numbers  [n_atoms], int64            Z of each atom
edge_index      [2, n_edges], int64         sender, receiver (see :mod:`macelerate.graph.neighbors`)
unit_shifts     [n_edges, 3], float         integer image offsets, stored in the float dtype
shifts          [n_edges, 3], float         ``unit_shifts @ cell`` of the edge's structure, Å
cell            [3 * n_graphs, 3], float    lattice vectors as rows, stacked per structure, Å
pbc             [n_graphs, 3], bool         periodicity per direction
batch           [n_atoms], int64            structure index of each atom
ptr             [n_graphs + 1], int64       atom offsets of the structures
head            [n_graphs], int64           readout head of each structure
=============== ========================== =========================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from macelerate.graph.caps import cap_neighbors
from macelerate.graph.neighbors import radius_graph
from macelerate.graph.validation import (
    DEFAULT_MIN_DISTANCE,
    check_cell_widths,
    check_min_distance,
    check_structure,
    one_hot_indices,
    warn_if_rounded,
)

GRAPH_KEYS = (
    "positions", "node_attrs", "atomic_numbers", "edge_index", "unit_shifts", "shifts",
    "cell", "pbc", "batch", "ptr", "head",
)  # fmt: skip


def _as_list(atoms_or_list: Atoms | Sequence[Atoms]) -> list[Atoms]:
    if isinstance(atoms_or_list, Atoms):
        return [atoms_or_list]
    structures = list(atoms_or_list)
    if not structures:
        from macelerate.errors import StructureError

        raise StructureError("no structures given: pass an ase.Atoms or a non-empty list of them")
    return structures


def _structure_edges(
    atoms: Atoms,
    *,
    cutoff: float,
    max_neighbors: int | None,
    min_distance: float | None,
    index: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Edges of one validated structure: ([2, n_edges] int64, [n_edges, 3] int64 unit shifts)."""
    edge_index, unit_shifts, lengths = radius_graph(
        atoms.positions, atoms.cell.array, atoms.pbc, cutoff=cutoff
    )
    check_min_distance(lengths, edge_index, min_distance=min_distance, index=index)
    if max_neighbors is not None:
        keep = cap_neighbors(edge_index, lengths, unit_shifts, max_neighbors=max_neighbors)
        edge_index, unit_shifts = edge_index[:, keep], unit_shifts[keep]
    return edge_index, unit_shifts


def build_graph(
    atoms_or_list: Atoms | Sequence[Atoms],
    *,
    cutoff: float,
    z_table: Sequence[int] | None = None,
    max_neighbors: int | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
    head: int = 0,
    min_distance: float | None = DEFAULT_MIN_DISTANCE,
    first_index: int | None = None,
) -> dict[str, torch.Tensor]:
    """Batch one or many structures into mace-torch's graph dictionary.

    Args:
        atoms_or_list: one ``ase.Atoms`` or a sequence of them (periodic, molecular or mixed).
        cutoff: neighbour cutoff in Å (a model's ``r_max``).
        z_table: the model's atomic numbers in one-hot order; default: the sorted elements present.
        max_neighbors: if set, each atom keeps only its k nearest senders (hard cap, see
            :func:`macelerate.graph.caps.cap_neighbors`).
        dtype: floating dtype of positions, shifts, cell and node attributes.
        device: where the tensors are placed.
        head: readout head index written into ``head`` for every structure.
        min_distance: Å; closer atom pairs raise :class:`~macelerate.errors.StructureError`.
            ``None`` disables the check.
        first_index: number of the first structure in error messages, for a batch cut out of a
            longer list (default: structures are numbered from 0, a lone one is not numbered).

    Returns:
        The graph dictionary documented in this module. Inputs are never modified.

    Raises:
        StructureError: empty structures, NaN/inf positions, zero-volume periodic cells, cells
            thinner than ``min_distance`` or so thin that the cutoff reaches more than
            :data:`~macelerate.graph.validation.MAX_PERIODIC_IMAGES` images, overlaps.
        UnknownElementError: an element outside ``z_table``.

    Warns:
        PrecisionLossWarning: ``dtype`` rounds the coordinates by more than 1e-4 Å (float32
            beyond ~840 Å from the origin).
    """
    structures = _as_list(atoms_or_list)
    labels = [
        None if first_index is None and len(structures) == 1 else (first_index or 0) + i
        for i in range(len(structures))
    ]
    for atoms, label in zip(structures, labels):
        check_structure(atoms, index=label)
        check_cell_widths(
            atoms.cell.array, atoms.pbc, cutoff=cutoff, min_distance=min_distance, index=label
        )
    if z_table is None:
        z_table = sorted({int(z) for atoms in structures for z in atoms.numbers})
    counts = np.array([len(atoms) for atoms in structures], dtype=np.int64)
    ptr = np.concatenate([[0], np.cumsum(counts)])

    edge_parts, shift_parts, shift_vector_parts = [], [], []
    for i, atoms in enumerate(structures):
        edge_index, unit_shifts = _structure_edges(
            atoms, cutoff=cutoff, max_neighbors=max_neighbors, min_distance=min_distance,
            index=labels[i],
        )  # fmt: skip
        edge_parts.append(edge_index + ptr[i])
        shift_parts.append(unit_shifts)
        shift_vector_parts.append(unit_shifts @ atoms.cell.array)  # [n_edges_i, 3] Å, float64

    numbers = np.concatenate([atoms.numbers for atoms in structures]).astype(np.int64)
    columns = one_hot_indices(numbers, z_table, index=None)
    n_atoms = int(ptr[-1])
    node_attrs = torch.zeros((n_atoms, len(z_table)), dtype=dtype)
    node_attrs[torch.arange(n_atoms), torch.from_numpy(columns)] = 1.0

    def floats(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64)).to(dtype)

    positions = np.concatenate([atoms.positions for atoms in structures])  # [n_atoms, 3] Å
    warn_if_rounded(np.concatenate([positions, *shift_vector_parts]), dtype=dtype)
    graph = {
        "positions": floats(positions),
        "node_attrs": node_attrs,
        "atomic_numbers": torch.from_numpy(numbers),
        "edge_index": torch.from_numpy(np.concatenate(edge_parts, axis=1)),
        "unit_shifts": floats(np.concatenate(shift_parts)),
        "shifts": floats(np.concatenate(shift_vector_parts)),
        "cell": floats(np.concatenate([atoms.cell.array for atoms in structures])),
        "pbc": torch.from_numpy(np.stack([atoms.pbc for atoms in structures])),
        "batch": torch.repeat_interleave(torch.arange(len(structures)), torch.from_numpy(counts)),
        "ptr": torch.from_numpy(ptr),
        "head": torch.full((len(structures),), head, dtype=torch.int64),
    }
    return {key: value.to(device) for key, value in graph.items()}
