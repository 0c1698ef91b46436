"""Equigrad: zero for an invariant MACE, the analytic value for a non-invariant energy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate.checks.equigrad import (
    check_equigrad,
    equigrad,
    equigrad_norm,
    graph_equigrad_norm,
    rotate_inputs,
)
from macelerate.models.loading import load
from tests.checks import Tilted


def _analytic_norm(positions: np.ndarray) -> float:
    """||M - M^T||_F with M = Σ_i (∂E/∂x_i) x_i^T for E = Σ_i x_i0²."""
    gradient = np.zeros_like(positions)
    gradient[:, 0] = 2 * positions[:, 0]
    moment = gradient.T @ positions
    return float(np.linalg.norm(moment - moment.T))


def test_invariant_mace_gives_zero(tiny_model, silicon, ethanol):
    potential = load(tiny_model)
    assert equigrad(potential, silicon) < 1e-10
    assert equigrad(potential, [silicon, ethanol]) < 1e-10
    result = check_equigrad(potential, ethanol)
    assert result.norm < 1e-10 and result.scale > 0 and result.relative < 1e-10


def test_non_invariant_potential_gives_the_analytic_value(tiny_model, ethanol):
    """The MACE part adds ~0, the tilted term 0.05 Σ x² gives 0.05 times the analytic norm."""
    broken = load(Tilted(tiny_model, strength=0.05))
    expected = 0.05 * _analytic_norm(ethanol.positions)
    assert equigrad(broken, ethanol) == pytest.approx(expected, rel=1e-9)
    assert check_equigrad(broken, ethanol).relative > 1e-2


def test_graph_is_not_modified(tiny_model, silicon):
    potential = load(tiny_model)
    graph = potential.build_graph(silicon)
    before = {key: value.clone() for key, value in graph.items()}
    norms = graph_equigrad_norm(potential, graph)
    assert norms.shape == (1,)
    assert all(torch.equal(graph[key], before[key]) for key in before)
    assert not graph["positions"].requires_grad


def test_non_invariant_callable_matches_analytic_gradient(ethanol):
    positions = torch.tensor(ethanol.positions)
    norm = equigrad_norm(lambda x, cell, shifts: (x[:, 0] ** 2).sum(), positions)
    expected = _analytic_norm(ethanol.positions)
    assert expected > 1.0
    assert float(norm[0]) == pytest.approx(expected, rel=1e-10)


def test_per_structure_norms_and_training_loss(ethanol):
    """Two structures get separate generators; create_graph lets the norm train parameters."""
    scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    first = torch.tensor(ethanol.positions)
    positions = torch.cat([first, torch.zeros(2, 3, dtype=torch.float64)])
    batch = torch.tensor([0] * len(ethanol) + [1, 1])

    def energy_fn(x, cell, shifts):
        per_atom = scale * x[:, 0] ** 2
        return torch.zeros(2, dtype=x.dtype).index_add(0, batch, per_atom)

    norms = equigrad_norm(
        energy_fn, positions, torch.zeros(6, 3, dtype=torch.float64), batch=batch,
        create_graph=True,
    )  # fmt: skip
    values = norms.detach().numpy()
    assert values[0] == pytest.approx(0.5 * _analytic_norm(ethanol.positions), rel=1e-10)
    assert values[1] == 0.0
    (gradient,) = torch.autograd.grad(norms.sum(), scale)
    assert float(gradient) == pytest.approx(_analytic_norm(ethanol.positions), rel=1e-10)


def test_rotate_inputs_moves_shifts_with_the_cell(silicon):
    generator = torch.tensor(np.random.default_rng(0).normal(size=(1, 3, 3)))
    cell = torch.tensor(silicon.cell.array)
    unit_shifts = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    positions, new_cell, shifts = rotate_inputs(
        generator, torch.tensor(silicon.positions), cell, unit_shifts,
        batch=torch.zeros(len(silicon), dtype=torch.int64),
        edge_graph=torch.zeros(2, dtype=torch.int64),
    )  # fmt: skip
    rotation = torch.linalg.matrix_exp(generator[0] - generator[0].T)
    assert torch.allclose(rotation @ rotation.T, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(new_cell, cell @ rotation.T)
    assert torch.allclose(shifts, unit_shifts @ cell @ rotation.T)
    assert torch.allclose(positions, torch.tensor(silicon.positions) @ rotation.T)
