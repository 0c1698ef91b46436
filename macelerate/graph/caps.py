"""Per-atom neighbour caps: keep the k nearest senders of every receiver inside the cutoff.

This is the *hard* cap: the kept set changes abruptly when the k-th and (k+1)-th neighbours swap
order, so energies jump there. Ties are broken deterministically (distance, then sender index, then
the image shift), so the same structure always gives the same graph whatever order the neighbour
list returned its pairs in. The common case costs one argsort of a combined (receiver, length) key;
the six-key sort that breaks ties runs only when a tie straddles the k-th place.
"""

from __future__ import annotations

import numpy as np


def cap_neighbors(
    edge_index: np.ndarray,
    lengths: np.ndarray,
    unit_shifts: np.ndarray,
    *,
    max_neighbors: int,
) -> np.ndarray:
    """Indices of the edges to keep so that every receiver has at most ``max_neighbors`` senders.

    Args:
        edge_index: [2, n_edges] sender, receiver.
        lengths: [n_edges] edge lengths in Å.
        unit_shifts: [n_edges, 3] integer image shifts (used only to break exact ties).
        max_neighbors: k, the largest number of incoming edges an atom keeps (>= 1).

    Returns:
        keep: [n_kept] int64 edge indices in ascending order.

    The cap is applied per receiver, so the capped graph need not be symmetric: atom j may keep i
    while i drops j.
    """
    if max_neighbors < 1:
        raise ValueError(f"max_neighbors must be >= 1, got {max_neighbors}")
    senders, receivers = edge_index
    if receivers.size == 0:
        return np.zeros(0, dtype=np.int64)
    # One float64 key sorts by receiver, then length: receivers are spaced further apart than any
    # length, and rounding keeps the order of lengths (it can only make two keys equal).
    key = receivers * (float(lengths.max()) + 1.0) + lengths
    order = np.argsort(key, kind="stable")
    sorted_receivers = receivers[order]
    counts = np.bincount(sorted_receivers)
    rank = np.arange(order.size) - (np.cumsum(counts) - counts)[sorted_receivers]
    # The kept set depends on tie-breaking only where equal keys straddle rank k-1 | k; there
    # the full order (length, then sender and image shift) decides.
    sorted_key = key[order]
    straddling = (rank[:-1] == max_neighbors - 1) & (sorted_key[1:] == sorted_key[:-1])
    if straddling.any():
        order = np.lexsort(
            (unit_shifts[:, 2], unit_shifts[:, 1], unit_shifts[:, 0], senders, lengths, receivers)
        )
        sorted_receivers = receivers[order]
        rank = np.arange(order.size) - (np.cumsum(counts) - counts)[sorted_receivers]
    return np.sort(order[rank < max_neighbors])
