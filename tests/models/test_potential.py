"""Potential: exact agreement with mace-torch, batching, no mutation, physics sanity."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from macelerate.errors import StructureError
from macelerate.models.loading import load
from macelerate.testing import numeric_forces, rotation_matrix


def _mace_results(model, atoms, dtype="float64"):
    from mace.calculators import MACECalculator

    calc = MACECalculator(models=copy.deepcopy(model), device="cpu", default_dtype=dtype)
    atoms = atoms.copy()
    atoms.calc = calc
    return (
        atoms.get_potential_energy(),
        atoms.get_forces(),
        (atoms.get_stress(voigt=False) if atoms.pbc.all() else None),
    )


def test_matches_mace_calculator_float64(tiny_model, silicon, ethanol):
    potential = load(tiny_model)
    for atoms in (silicon, ethanol):
        energy, forces, stress = _mace_results(tiny_model, atoms)
        prediction = potential.predict(atoms)
        assert abs(prediction.energy[0] - energy) < 1e-10
        np.testing.assert_allclose(prediction.forces, forces, atol=1e-10)
        if stress is not None:
            np.testing.assert_allclose(prediction.stress[0], stress, atol=1e-10)
        else:
            assert prediction.stress is None


def test_batch_equals_single(tiny_model, silicon, ethanol):
    potential = load(tiny_model)
    batch = potential.predict([silicon, ethanol], compute_stress=False)
    for k, atoms in enumerate((silicon, ethanol)):
        single = potential.predict(atoms, compute_stress=False)
        assert abs(batch.energy[k] - single.energy[0]) < 1e-10
        np.testing.assert_allclose(
            batch.forces[batch.ptr[k] : batch.ptr[k + 1]], single.forces, atol=1e-10
        )


def test_caller_objects_are_not_modified(tiny_model, silicon):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    dtype = next(tiny_model.parameters()).dtype
    potential = load(tiny_model, dtype="float32")
    graph = potential.build_graph(silicon)
    frozen = {k: v.clone() for k, v in graph.items()}
    potential.forward(graph, compute_stress=True)
    assert all(torch.equal(graph[k], frozen[k]) for k in graph)
    assert not graph["positions"].requires_grad
    assert next(tiny_model.parameters()).dtype == dtype
    assert all(torch.equal(v, state[k]) for k, v in tiny_model.state_dict().items())


def test_forces_are_the_energy_gradient(tiny_model, silicon):
    potential = load(tiny_model)
    forces = potential.predict(silicon).forces
    np.testing.assert_allclose(
        numeric_forces(potential, silicon, indices=[0, 5]), forces[[0, 5]], atol=1e-6
    )


def test_rotation_equivariance(tiny_model, ethanol):
    potential = load(tiny_model)
    rotation = rotation_matrix(np.random.default_rng(0))
    rotated = ethanol.copy()
    rotated.positions = ethanol.positions @ rotation.T
    a, b = potential.predict(ethanol), potential.predict(rotated)
    assert abs(a.energy[0] - b.energy[0]) < 1e-10
    np.testing.assert_allclose(a.forces @ rotation.T, b.forces, atol=1e-10)


def test_float32_is_close_to_float64(tiny_model, silicon):
    f64 = load(tiny_model, dtype="float64").predict(silicon)
    f32 = load(tiny_model, dtype="float32").predict(silicon)
    np.testing.assert_allclose(f32.forces, f64.forces, atol=1e-4)


def test_stress_needs_full_periodicity(tiny_model, ethanol):
    with pytest.raises(StructureError, match="periodic in all three"):
        load(tiny_model).predict(ethanol, compute_stress=True)


def test_single_atom_without_neighbours(tiny_model):
    from ase import Atoms

    prediction = load(tiny_model).predict(Atoms("O", positions=[[0, 0, 0]]))
    np.testing.assert_allclose(prediction.forces, 0.0)
    assert np.isfinite(prediction.energy).all()


def test_torch_global_state_is_untouched(tiny_model, silicon):
    before = torch.get_default_dtype()
    load(tiny_model, dtype="float32").predict(silicon)
    load(tiny_model, dtype="float64").predict(silicon)
    assert torch.get_default_dtype() == before
    assert torch.is_grad_enabled()


def test_unknown_options_are_rejected(tiny_model):
    with pytest.raises(TypeError, match="unknown options"):
        load(tiny_model, precison="fp32")
    with pytest.raises(ValueError, match="unknown precision preset 'fp8'"):
        load(tiny_model, precision="fp8")
    with pytest.raises(ValueError, match="dtype"):
        load(tiny_model, dtype="float16")
