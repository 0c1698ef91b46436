"""radius_graph against ASE's reference neighbour list on random cells (property-based)."""

from __future__ import annotations

import numpy as np
from ase.neighborlist import primitive_neighbor_list
from hypothesis import given, settings
from hypothesis import strategies as st

from macelerate.graph.neighbors import radius_graph


def _edge_set(i, j, shifts) -> set[tuple[int, ...]]:
    return {(int(a), int(b), *map(int, s)) for a, b, s in zip(i, j, shifts)}


@st.composite
def random_systems(draw):
    """Random triclinic, small or skewed cells with mixed periodicity and a cutoff."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n_atoms = draw(st.integers(1, 12))
    lengths = draw(st.lists(st.floats(1.2, 7.0), min_size=3, max_size=3))
    cell = np.diag(lengths) + draw(st.floats(0.0, 0.6)) * rng.normal(size=(3, 3)) * min(lengths)
    if abs(np.linalg.det(cell)) < 0.2 * np.prod(lengths):
        cell = np.diag(lengths)
    pbc = np.array(draw(st.lists(st.booleans(), min_size=3, max_size=3)))
    positions = rng.random((n_atoms, 3)) @ cell
    cutoff = draw(st.floats(0.8, 4.5))
    return positions, cell, pbc, cutoff


@settings(max_examples=60, deadline=None)
@given(random_systems())
def test_radius_graph_matches_ase(system):
    positions, cell, pbc, cutoff = system
    edge_index, shifts, lengths = radius_graph(positions, cell, pbc, cutoff=cutoff)
    i, j, s, d = primitive_neighbor_list(
        "ijSd", pbc, cell, positions, cutoff, self_interaction=False
    )
    # primitive_neighbor_list drops self-pairs only in the home image, as we do
    assert _edge_set(*edge_index, shifts) == _edge_set(i, j, s)
    vectors = positions[edge_index[1]] - positions[edge_index[0]] + shifts @ cell
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), lengths, atol=1e-10)
    assert (lengths < cutoff).all()


def test_tiny_cell_sees_many_images():
    cell = np.diag([1.0, 1.0, 1.0])
    edge_index, shifts, lengths = radius_graph(np.zeros((1, 3)), cell, np.ones(3, bool), cutoff=2.5)
    # all lattice points with 0 < |n| < 2.5 in a simple cubic lattice of spacing 1
    grid = np.array([(a, b, c) for a in range(-3, 4) for b in range(-3, 4) for c in range(-3, 4)])
    expected = int(((np.linalg.norm(grid, axis=1) < 2.5) & (np.abs(grid).sum(1) > 0)).sum())
    assert edge_index.shape[1] == expected
    assert (edge_index == 0).all()


def test_isolated_atom_has_no_edges():
    positions = np.array([[0.0, 0, 0], [10.0, 0, 0]])
    edge_index, shifts, lengths = radius_graph(
        positions, np.zeros((3, 3)), np.zeros(3, bool), cutoff=3.0
    )
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3) and lengths.shape == (0,)
