"""NVE drift: the fit on synthetic data and a short run of a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from macelerate.checks.nve import check_nve, energy_fluctuation, fit_drift
from macelerate.models.loading import load


def test_fit_drift_recovers_a_known_slope():
    times = np.linspace(0.0, 2.0, 201)  # ps
    n_atoms = 8
    energy = -10.0 + 3e-3 * n_atoms * times  # 3 meV/atom/ps
    assert fit_drift(times, energy, n_atoms=n_atoms) == pytest.approx(3.0, rel=1e-9)
    wiggly = energy + 1e-3 * np.sin(2 * np.pi * 10 * times)  # whole periods of oscillation
    assert fit_drift(times, wiggly, n_atoms=n_atoms) == pytest.approx(3.0, abs=0.05)


def test_energy_fluctuation_is_rms_about_the_mean():
    energy = 5.0 + 2e-3 * np.array([1.0, -1.0, 1.0, -1.0])  # ±2 meV for 2 atoms
    assert energy_fluctuation(energy, n_atoms=2) == pytest.approx(1.0)


def test_short_nve_run_conserves_energy(tiny_model, silicon):
    before = silicon.copy()
    result = check_nve(load(tiny_model), silicon, steps=12, timestep_fs=0.25, seed=1)
    assert np.isfinite(result.drift_mev_per_atom_ps)
    assert abs(result.drift_mev_per_atom_ps) < 1.0
    assert result.fluctuation_mev_per_atom < 0.1
    assert 0 < result.final_temperature_k < 1000 and result.n_atoms == 8
    assert silicon.calc is None and np.array_equal(silicon.positions, before.positions)


def test_too_few_steps_is_an_error(tiny_model, silicon):
    with pytest.raises(ValueError, match="at least 2 steps"):
        check_nve(load(tiny_model), silicon, steps=1)


def test_a_run_that_blows_up_is_a_failed_check(tiny_model, ethanol):
    from macelerate.checks.thresholds import TOLERANCES

    result = check_nve(load(tiny_model), ethanol, steps=40, timestep_fs=10.0)
    assert result.problem is not None and "MD blew up at step" in result.problem
    assert np.isnan(result.drift_mev_per_atom_ps)
    (verdict,) = result.verdicts(TOLERANCES["float64"])
    assert not verdict.passed and "MD blew up" in verdict.hint


def test_short_runs_allow_for_the_oscillation_they_cannot_resolve(tiny_model, ethanol):
    """Two steps fix no slope: the pass limit grows by (3 x residual + 0.01 meV/atom) / T."""
    from macelerate.checks.thresholds import TOLERANCES

    result = check_nve(load(tiny_model), ethanol, steps=2, timestep_fs=0.5, seed=1)
    assert result.resolution_mev_per_atom_ps >= 0.01 / 1e-3
    assert result.verdicts(TOLERANCES["float64"])[0].passed
