"""Radius graphs of one structure with vesin (compiled cell lists).

Edge convention, stated once for all of macelerate (it is mace-torch's and matscipy's):
``edge_index[0]`` is the sender ``i``, ``edge_index[1]`` the receiver ``j``, and the edge vector is
``positions[j] - positions[i] + unit_shifts @ cell`` (Å). Messages flow from sender to receiver and
are summed at the receiver, so "the neighbours of atom j" are the senders of the edges ending
at ``j``.
"""

from __future__ import annotations

import numpy as np
import vesin

from macelerate.graph.validation import check_cell_widths


def radius_graph(
    positions: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    *,
    cutoff: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs closer than ``cutoff``, through any number of periodic images.

    Args:
        positions: [n_atoms, 3] Cartesian positions in Å.
        cell: [3, 3] lattice vectors as rows, in Å. Rows along non-periodic directions may be zero.
        pbc: [3] periodicity per lattice direction.
        cutoff: radius in Å; pairs with distance < cutoff are kept.

    Returns:
        edge_index: [2, n_edges] int64, sender then receiver.
        unit_shifts: [n_edges, 3] int64 image offsets in units of the lattice vectors.
        lengths: [n_edges] float64 edge lengths in Å.

    Self-pairs inside the same image are never returned; an atom does see its own periodic images.

    Raises:
        StructureError: a periodic cell so thin that the cutoff reaches more than
            :data:`~macelerate.graph.validation.MAX_PERIODIC_IMAGES` images (checked before vesin
            runs, which would allocate gigabytes for it).
    """
    check_cell_widths(cell, pbc, cutoff=cutoff, min_distance=None)
    pbc_list = [bool(flag) for flag in pbc]
    box = np.asarray(cell, dtype=np.float64) if any(pbc_list) else np.zeros((3, 3))
    neighbor_list = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    senders, receivers, shifts, lengths = neighbor_list.compute(
        points=np.asarray(positions, dtype=np.float64),
        box=box,
        periodic=pbc_list,
        quantities="ijSd",
    )
    edge_index = np.stack([senders.astype(np.int64), receivers.astype(np.int64)])  # [2, n_edges]
    return edge_index, shifts.astype(np.int64), lengths
