"""Hard neighbour caps: k nearest per receiver, deterministic under reordering."""

from __future__ import annotations

import numpy as np
import pytest

from macelerate.graph.caps import cap_neighbors
from macelerate.graph.neighbors import radius_graph


def _graph(seed=0, n=20):
    rng = np.random.default_rng(seed)
    positions = rng.random((n, 3)) * 6.0
    return radius_graph(positions, np.eye(3) * 6.0, np.ones(3, bool), cutoff=3.0)


def test_cap_keeps_the_k_nearest_of_each_receiver():
    edge_index, shifts, lengths = _graph()
    keep = cap_neighbors(edge_index, lengths, shifts, max_neighbors=4)
    for receiver in np.unique(edge_index[1]):
        incoming = np.flatnonzero(edge_index[1] == receiver)
        kept = np.intersect1d(incoming, keep)
        assert len(kept) == min(4, len(incoming))
        dropped = np.setdiff1d(incoming, kept)
        if dropped.size:
            assert lengths[kept].max() <= lengths[dropped].min()


def test_cap_is_independent_of_input_order():
    edge_index, shifts, lengths = _graph(seed=3)
    keep = cap_neighbors(edge_index, lengths, shifts, max_neighbors=3)
    perm = np.random.default_rng(0).permutation(lengths.size)
    keep_perm = cap_neighbors(edge_index[:, perm], lengths[perm], shifts[perm], max_neighbors=3)
    assert {tuple(x) for x in np.c_[edge_index[:, keep].T, shifts[keep]]} == {
        tuple(x) for x in np.c_[edge_index[:, perm][:, keep_perm].T, shifts[perm][keep_perm]]
    }


def test_exact_ties_break_by_sender_index():
    # atom 0 at the centre of a square of four equidistant neighbours
    positions = np.array([[0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0]], float)
    edge_index, shifts, lengths = radius_graph(
        positions, np.zeros((3, 3)), np.zeros(3, bool), cutoff=1.2
    )
    keep = cap_neighbors(edge_index, lengths, shifts, max_neighbors=2)
    kept_senders = sorted(edge_index[0, keep][edge_index[1, keep] == 0])
    assert kept_senders == [1, 2]


def test_cap_rejects_nonpositive_k():
    edge_index, shifts, lengths = _graph()
    with pytest.raises(ValueError, match="max_neighbors"):
        cap_neighbors(edge_index, lengths, shifts, max_neighbors=0)
