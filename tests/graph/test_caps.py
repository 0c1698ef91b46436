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


def _reference_keep(edge_index, lengths, shifts, k):
    """The definition: sort by (receiver, length, sender, shift) and keep the first k of each."""
    senders, receivers = edge_index
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], senders, lengths, receivers))
    kept = []
    for receiver in np.unique(receivers):
        kept.extend(order[receivers[order] == receiver][:k])
    return np.sort(np.array(kept, dtype=np.int64))


@pytest.mark.parametrize("k", [1, 4, 6, 12])
def test_fast_path_and_tie_fallback_match_the_definition(k):
    # random structure (no ties) and a simple-cubic crystal (shells of exactly equal lengths)
    random_graph = _graph(seed=5, n=40)
    cubic = np.stack(np.meshgrid(*[np.arange(3.0)] * 3, indexing="ij"), -1).reshape(-1, 3)
    crystal = radius_graph(cubic, np.eye(3) * 3.0, np.ones(3, bool), cutoff=2.5)
    for edge_index, shifts, lengths in (random_graph, crystal):
        perm = np.random.default_rng(k).permutation(lengths.size)
        edge_index, shifts, lengths = edge_index[:, perm], shifts[perm], lengths[perm]
        keep = cap_neighbors(edge_index, lengths, shifts, max_neighbors=k)
        np.testing.assert_array_equal(keep, _reference_keep(edge_index, lengths, shifts, k))


def test_cap_of_an_empty_graph_is_empty():
    empty = np.zeros((2, 0), dtype=np.int64)
    keep = cap_neighbors(empty, np.zeros(0), np.zeros((0, 3), dtype=np.int64), max_neighbors=3)
    assert keep.shape == (0,)
