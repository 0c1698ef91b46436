"""Finite-difference forces and stress agree with autograd for a float64 MACE."""

from __future__ import annotations

import numpy as np

from macelerate.checks.gradients import check_gradients, strained
from macelerate.checks.thresholds import TOLERANCES
from macelerate.models.loading import load
from tests.checks import Tilted


def test_forces_and_stress_match_finite_differences(tiny_model, silicon):
    result = check_gradients(load(tiny_model), silicon, n_samples=4, seed=1)
    assert result.n_samples == 4
    assert result.force_abs < 1e-6 and result.force_rel < 1e-6
    assert result.stress_abs is not None and result.stress_rel < 1e-5


def test_molecule_has_no_stress(tiny_model, ethanol):
    result = check_gradients(load(tiny_model), ethanol, n_samples=3)
    assert result.force_rel < 1e-6 and result.stress_abs is None


def test_wrong_forces_are_detected(tiny_model, ethanol):
    """A model whose forces are off by 1% of their size fails the comparison."""
    potential = load(tiny_model)
    largest = np.linalg.norm(potential.predict(ethanol).forces, axis=1).max()  # eV/Å
    broken = Tilted(tiny_model, strength=0.0, force_scale=1.01)
    result = check_gradients(load(broken), ethanol, n_samples=4)
    assert 1e-3 * largest < result.force_abs < 1e-2 * largest
    (verdict,) = result.verdicts(TOLERANCES["float64"])
    assert not verdict.passed and "not the negative gradient" in verdict.hint
    healthy = check_gradients(potential, ethanol, n_samples=4)
    assert all(v.passed for v in healthy.verdicts(TOLERANCES["float64"]))


def test_strain_maps_cell_and_positions(silicon):
    strain = np.array([[0.01, 0.002, 0.0], [0.002, 0.0, 0.0], [0.0, 0.0, -0.01]])
    copy = strained(silicon, strain)
    fractional = copy.get_scaled_positions(wrap=False)
    assert np.allclose(fractional, silicon.get_scaled_positions(wrap=False))
    assert not np.allclose(copy.cell.array, silicon.cell.array)


def test_float32_uses_a_larger_step(tiny_model, ethanol):
    result = check_gradients(load(tiny_model, dtype="float32"), ethanol, n_samples=2)
    assert result.step == 1e-2 and result.force_rel < 1e-2
