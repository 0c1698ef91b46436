"""The fused edge tensor product equals e3nn's tensor product followed by the neighbour sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate.models.loading import load
from macelerate.runtime.fused_conv import (
    FusedEdgeTensorProduct,
    fuse_message_passing,
    supports_fusion,
)
from macelerate.testing import tiny_mace


@pytest.mark.parametrize("max_L", [0, 1, 2])
def test_block_output_equals_e3nn_plus_scatter(max_L):
    model = tiny_mace([1, 6, 8], max_L=max_L, max_ell=3)
    generator = torch.Generator().manual_seed(0)
    for block in model.interactions:
        tp = block.conv_tp
        assert supports_fusion(tp)
        fused = FusedEdgeTensorProduct(tp)
        n_nodes, n_edges = 7, 40
        node_feats = torch.randn(
            n_nodes, tp.irreps_in1.dim, generator=generator, dtype=torch.float64
        )
        edge_attrs = torch.randn(
            n_edges, tp.irreps_in2.dim, generator=generator, dtype=torch.float64
        )
        weights = torch.randn(n_edges, tp.weight_numel, generator=generator, dtype=torch.float64)
        edge_index = torch.randint(0, n_nodes, (2, n_edges), generator=generator)
        edge_index[1, :3] = 6  # one receiver with many neighbours, others with few or none
        expected = torch.zeros(n_nodes, tp.irreps_out.dim, dtype=torch.float64).index_add(
            0, edge_index[1], tp(node_feats[edge_index[0]], edge_attrs, weights)
        )
        torch.testing.assert_close(fused(node_feats, edge_attrs, weights, edge_index), expected)


def test_potential_results_and_gradients_equal_unfused(silicon, ethanol):
    model = tiny_mace([1, 6, 8, 14], max_L=1, max_ell=3)
    fused = load(model)
    plain = load(model, fuse_message_passing=False)
    assert fused.fused_blocks == 2 and plain.fused_blocks == 0
    for atoms in (silicon, ethanol):
        stress = bool(atoms.pbc.all())
        a, b = (
            fused.predict(atoms, compute_stress=stress),
            plain.predict(atoms, compute_stress=stress),
        )
        np.testing.assert_allclose(a.energy, b.energy, atol=1e-12)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-12)
        if stress:
            np.testing.assert_allclose(a.stress, b.stress, atol=1e-12)


def test_training_gradients_flow_through_the_fused_block(silicon):
    model = tiny_mace([14], max_L=1)
    fuse_message_passing(model)
    graph = load(model, fuse_message_passing=False).build_graph(silicon)
    graph["positions"].requires_grad_(True)
    out = model(dict(graph), training=True, compute_force=True)
    loss = out["forces"].pow(2).sum()
    loss.backward()  # double backward through the fused block (force-matching loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_no_edges_and_user_module_untouched():
    model = tiny_mace([8])
    before = type(model.interactions[0].conv_tp)
    potential = load(model, fuse_message_passing=True)
    assert potential.fused_blocks == 2
    prediction = potential.predict(Atoms("O2", positions=[[0, 0, 0], [9, 0, 0]]))
    np.testing.assert_allclose(prediction.forces, 0.0)
    assert type(model.interactions[0].conv_tp) is before
    assert not hasattr(model.interactions[0], "conv_fusion")


def test_float32_model_gets_float32_coefficients(silicon):
    model = tiny_mace([14])
    potential = load(model, dtype="float32", fuse_message_passing=True)
    coefficients = potential.model.interactions[0].conv_tp.coefficients_0
    assert coefficients.dtype == torch.float32
    reference = load(model, dtype="float64").predict(silicon)
    np.testing.assert_allclose(potential.predict(silicon).forces, reference.forces, atol=1e-4)
