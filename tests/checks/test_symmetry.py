"""Symmetry check: an exact float64 MACE passes; a model with a non-invariant term is caught."""

from __future__ import annotations

import numpy as np
import pytest

from macelerate.checks.symmetry import check_symmetry, improper_rotation, rotated
from macelerate.models.loading import load
from tests.checks import Tilted


@pytest.fixture(scope="module")
def exact(tiny_model):
    return load(tiny_model)


def test_exact_model_is_equivariant_periodic(exact, silicon):
    result = check_symmetry(exact, silicon, n_rotations=2, seed=3)
    assert result.max_relative < 1e-10
    assert result.rotation.n_copies == 2 and result.reflection.n_copies == 2
    assert result.translation.n_copies == 2  # shifted, and shifted then wrapped
    assert result.rotation.stress_rel is not None and result.rotation.stress_rel < 1e-10
    assert result.dtype == "float64"


def test_exact_model_is_equivariant_molecule(exact, ethanol):
    result = check_symmetry(exact, ethanol, n_rotations=2)
    assert result.max_relative < 1e-10
    assert result.rotation.stress_abs is None and result.translation.n_copies == 1
    assert "max_relative" in result.to_dict()


def test_non_invariant_term_is_detected(tiny_model, ethanol, silicon):
    broken = load(Tilted(tiny_model))
    molecule = check_symmetry(broken, ethanol, n_rotations=2)
    assert molecule.rotation.energy_rel > 1e-4 and molecule.rotation.force_rel > 1e-3
    assert molecule.translation.energy_abs > 1e-4
    assert molecule.permutation.energy_rel < 1e-10  # the extra term is a sum over atoms
    crystal = check_symmetry(broken, silicon, n_rotations=1)
    assert crystal.max_relative > 1e-3


def test_input_is_not_modified(exact, silicon):
    before = silicon.copy()
    check_symmetry(exact, silicon, n_rotations=1)
    assert np.array_equal(silicon.positions, before.positions)
    assert np.array_equal(silicon.cell.array, before.cell.array) and silicon.calc is None


def test_rotation_helpers(silicon):
    reflection = improper_rotation(np.random.default_rng(0))
    assert np.linalg.det(reflection) == pytest.approx(-1.0)
    assert np.allclose(reflection @ reflection.T, np.eye(3))
    turned = rotated(silicon, reflection)
    assert np.allclose(turned.get_all_distances(mic=True), silicon.get_all_distances(mic=True))
