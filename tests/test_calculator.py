"""The ASE calculator: properties, Voigt stress, MD and optimisers, no global state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.calculator import PropertyNotImplementedError
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.stress import full_3x3_to_voigt_6_stress

from macelerate.calculator import Calculator
from macelerate.md import MDConfig, run_md
from macelerate.models.loading import load


def test_properties_match_the_potential(tiny_model, silicon):
    potential = load(tiny_model)
    silicon.calc = Calculator(potential)
    prediction = potential.predict(silicon)
    assert silicon.get_potential_energy() == pytest.approx(prediction.energy[0], abs=1e-10)
    assert silicon.get_potential_energy(force_consistent=True) == pytest.approx(
        prediction.energy[0]
    )
    np.testing.assert_allclose(silicon.get_forces(), prediction.forces, atol=1e-10)
    np.testing.assert_allclose(
        silicon.get_stress(), full_3x3_to_voigt_6_stress(prediction.stress[0]), atol=1e-10
    )
    assert silicon.get_potential_energies().sum() == pytest.approx(prediction.energy[0], abs=1e-8)


def test_stress_of_a_molecule_is_not_implemented(tiny_model, ethanol):
    ethanol.calc = Calculator(tiny_model)
    ethanol.get_forces()
    with pytest.raises(PropertyNotImplementedError):
        ethanol.get_stress()


def test_nve_md_conserves_energy_and_leaves_dtype_alone(tiny_model, ethanol):
    before = torch.get_default_dtype()
    ethanol.calc = Calculator(tiny_model, dtype="float64")
    result = run_md(
        ethanol, MDConfig(steps=20, timestep_fs=0.25, temperature_k=300), progress=False
    )
    assert torch.get_default_dtype() == before
    assert np.ptp(result.total_energy) < 2e-3 * len(ethanol)
    assert result.steps_per_second > 0 and result.ns_per_day > 0


def test_langevin_md_writes_a_trajectory(tiny_model, silicon, tmp_path):
    from ase.io import read

    silicon.calc = Calculator(tiny_model)
    out = tmp_path / "md.traj"
    config = MDConfig(steps=6, ensemble="langevin", trajectory=str(out), write_every=2)
    run_md(silicon, config, progress=False)
    assert len(read(out, ":")) == 4  # steps 0, 2, 4, 6


def test_cell_relaxation_lowers_the_energy(tiny_model, silicon):
    silicon.set_cell(silicon.cell * 0.85, scale_atoms=True)
    silicon.calc = Calculator(tiny_model)
    start = silicon.get_potential_energy()
    start_stress = np.abs(silicon.get_stress()).max()
    assert start_stress > 1e-3  # something to relax
    BFGS(FrechetCellFilter(silicon), logfile=None).run(fmax=1e-4, steps=10)
    assert silicon.get_potential_energy() < start


def test_from_checkpoint_refuses_pickles(tiny_model_file):
    from macelerate.errors import ModelFileError

    with pytest.raises(ModelFileError, match="allow_pickle=False"):
        Calculator.from_checkpoint(tiny_model_file)
