"""Smoothness: a hard neighbour cap makes a jump where the uncapped model is smooth."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from macelerate.checks.smoothness import check_smoothness, cutoff_crossing
from macelerate.models.loading import load


@pytest.fixture(scope="module")
def potential(tiny_model):
    return load(tiny_model)


def _swap_geometry() -> Atoms:
    """C at the origin, O fixed at 2 Å on -x, H moving through 2 Å on +x: with a cap of one
    neighbour, carbon's kept neighbour swaps from H to O as H passes 2 Å."""
    positions = [[0.0, 0.0, 0.0], [1.9, 0.0, 0.0], [-2.0, 0.0, 0.0]]
    return Atoms("CHO", positions=positions)


def test_hard_cap_jump_is_flagged(potential):
    atoms = _swap_geometry()
    options = {"atom": 1, "direction": np.array([1.0, 0.0, 0.0]), "start": 0.0, "span": 0.2}
    smooth = check_smoothness(potential, atoms, n_points=41, **options)
    capped = check_smoothness(potential, atoms, n_points=41, max_neighbors=1, **options)
    assert smooth.max_neighbors is None and capped.max_neighbors == 1
    assert smooth.energy_ratio < 10 and smooth.force_ratio < 10
    assert capped.energy_ratio > 50 * smooth.energy_ratio
    assert capped.force_ratio > 50 * smooth.force_ratio
    assert capped.max_force_jump > 100 * smooth.max_force_jump
    assert smooth.step == pytest.approx(0.005)


def test_default_path_crosses_a_cutoff_sphere(potential, silicon):
    direction, offset = cutoff_crossing(silicon, 0, cutoff=potential.r_max)
    assert np.linalg.norm(direction) == pytest.approx(1.0) and abs(offset) < 2.0
    moved = silicon.copy()
    moved.positions[0] += offset * direction
    first, second, lengths = neighbor_list("ijd", moved, potential.r_max + 0.01)
    on_sphere = np.isclose(lengths, potential.r_max, atol=1e-9) & (first != second)
    assert on_sphere.any() and 0 in first[on_sphere]
    result = check_smoothness(potential, silicon, n_points=21)
    assert result.energy_ratio < 10 and result.force_ratio < 10
    assert np.isfinite(result.max_energy_slope) and result.atom == 0
