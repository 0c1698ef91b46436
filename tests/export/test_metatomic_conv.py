"""The scriptable kernels of metatomic exports (fused convolution, sparse symmetric contraction)
equal mace-torch's modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate.compress.paths import conv_paths, remove_conv_paths
from macelerate.export._metatomic_contraction import ScriptableSymmetricContraction
from macelerate.export._metatomic_conv import ScriptableFusedConv, fuse_for_export
from macelerate.export.metatomic import _compiled
from macelerate.graph.batch import build_graph
from macelerate.testing import tiny_mace

ELEMENTS = [1, 6, 8, 14]


def _outputs(model, atoms):
    graph = build_graph(atoms, cutoff=4.0, z_table=ELEMENTS, dtype=torch.float64, min_distance=None)
    data = dict(graph)
    data["positions"] = graph["positions"].clone()
    out = model(data, training=False, compute_force=True, compute_stress=bool(atoms.pbc.all()))
    keys = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    return {key: out[key].detach() for key in keys}


def _structures(silicon, ethanol):
    far = Atoms("HCO", positions=[[0, 0, 0], [1.1, 0, 0], [30.0, 0, 0]])  # O has no neighbour
    alone = Atoms("H", positions=[[0, 0, 0]])  # no edge at all
    return [silicon, ethanol, far, alone]


@pytest.mark.parametrize("removed_path", [False, True])
def test_exported_convolution_equals_mace(silicon, ethanol, removed_path):
    model = tiny_mace(ELEMENTS, channels=8, max_L=1, max_ell=2, seed=5)
    if removed_path:  # a dead path: not computed, and the result is unchanged
        path = next(p for p in conv_paths(model) if p.layer == 1 and p.width > 8)
        model = remove_conv_paths(model, [path])
    fused = copy.deepcopy(model)
    assert fuse_for_export(fused) == 2 * len(model.interactions)  # convolutions and products
    assert fuse_for_export(fused) == 0  # already done: left alone
    convs = [block.conv_tp for block in fused.interactions]
    assert all(isinstance(conv, ScriptableFusedConv) for conv in convs)
    products = [product.symmetric_contractions for product in fused.products]
    assert all(isinstance(p, ScriptableSymmetricContraction) for p in products)
    live = [path[7] for conv in convs for path in conv.paths]
    assert (0 in live) == removed_path
    compiled = _compiled(copy.deepcopy(fused))
    for atoms in _structures(silicon, ethanol):
        want = _outputs(model, atoms)
        for candidate in (fused, compiled):
            got = _outputs(candidate, atoms)
            for key, value in want.items():
                np.testing.assert_allclose(got[key], value, atol=1e-12, rtol=0, err_msg=key)
