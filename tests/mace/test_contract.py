"""The mace-torch / e3nn surface macelerate relies on (``macelerate.mace.contract``) holds.

A mace-torch or e3nn upgrade that moves an attribute, a parameter or a behaviour macelerate uses
fails here, in one place, with every difference listed.
"""

from __future__ import annotations

import copy
import importlib

import numpy as np
import pytest
import torch
from ase.build import bulk

from macelerate import _mace
from macelerate._mace import import_mace, quiet_model_construction
from macelerate.errors import MacelerateError
from macelerate.graph.batch import build_graph
from macelerate.mace import config as mace_config
from macelerate.mace import contract, layout
from macelerate.mace.contract import (
    BEHAVIOURS,
    SUPPORTED_VERSIONS,
    MaceVersionError,
    check_mace_version,
    installed_versions,
)
from macelerate.mace.surface import member_problems, signature_problems
from macelerate.models import mace_pickle
from macelerate.testing import tiny_mace_config

Z = [1, 6, 8]


@pytest.fixture(scope="module")
def with_zbl() -> torch.nn.Module:
    """A model with mace-torch's ZBL pair repulsion (its optional members)."""
    torch.manual_seed(3)
    config = tiny_mace_config(Z, num_interactions=1) | {"pair_repulsion": True}
    return mace_config.build_mace_model(config).eval()


def _graph(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    atoms = bulk("C", "diamond", a=3.57, cubic=True)
    atoms.numbers[::3] = 8
    atoms.rattle(0.05, rng=np.random.default_rng(0))
    return build_graph(atoms, cutoff=float(model.r_max), z_table=Z, min_distance=None)


def test_installed_versions_are_supported():
    check_mace_version()
    installed = installed_versions()
    assert all(installed[name] in versions for name, versions in SUPPORTED_VERSIONS.items())


def test_other_versions_are_one_clear_import_error():
    with pytest.raises(MaceVersionError) as caught:
        check_mace_version({"mace-torch": "0.3.15", "e3nn": "0.4.4"})
    message = str(caught.value)
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, MacelerateError)
    assert "0.3.15 is installed" in message and "mace-torch 0.3.16" in message
    assert "pip install 'mace-torch==0.3.16' 'e3nn==0.4.4'" in message
    assert "e3nn 0.4.4 (" not in message  # only what is wrong is named
    with pytest.raises(MaceVersionError, match=r"mace-torch 0\.3\.16 \(is not installed\); e3nn"):
        check_mace_version({"mace-torch": None, "e3nn": "0.5.0"})


def test_import_mace_checks_the_versions(monkeypatch):
    monkeypatch.setitem(SUPPORTED_VERSIONS, "mace-torch", ("0.0.1",))
    _mace._check_versions.cache_clear()
    try:
        with pytest.raises(MaceVersionError, match="mace-torch 0.0.1"):
            import_mace()
    finally:
        _mace._check_versions.cache_clear()  # checked again, with the real table, next time


def test_every_listed_member_exists_with_its_kind(residual, selector, with_zbl):
    assert member_problems(residual, selector, with_zbl) == []


def test_a_missing_member_is_named(residual):
    with quiet_model_construction():
        broken = copy.deepcopy(residual.interactions[0])
    del broken.skip_tp
    problems = member_problems(torch.nn.ModuleList([broken]))
    assert "RealAgnosticResidualInteractionBlock.skip_tp is missing" in " ".join(problems)


def test_every_listed_signature_holds():
    assert signature_problems() == []


def test_class_names_name_mace_classes():
    modules = import_mace().modules
    for name in contract.MODEL_CLASSES:
        assert isinstance(getattr(modules, name), type)
    for name in (*contract.INTERACTION_CLASSES, contract.RADIAL_EMBEDDING_CLASS):
        assert isinstance(getattr(modules.blocks, name), type)
    for name in (contract.SYMMETRIC_CONTRACTION_CLASS, contract.EMPTY_PARAM_CLASS):
        assert isinstance(getattr(modules.symmetric_contraction, name), type)
    assert set(contract.SELECTOR_INTERACTION_CLASSES) <= set(contract.INTERACTION_CLASSES)


def test_dispatch_uses_the_contract_names():
    from macelerate.runtime.fused_conv import FUSABLE_BLOCKS

    assert layout.SUPPORTED_INTERACTIONS == contract.INTERACTION_CLASSES
    assert layout.SELECTOR_INTERACTIONS == contract.SELECTOR_INTERACTION_CLASSES
    assert mace_config.MODEL_CLASSES == contract.MODEL_CLASSES
    assert set(FUSABLE_BLOCKS) == set(contract.INTERACTION_CLASSES)


def test_pickle_allow_list_names_existing_classes():
    import_mace()
    for qualified in sorted(mace_pickle.MODULE_CLASSES | mace_pickle.VALUE_CLASSES):
        module, _, name = qualified.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), name), type), qualified


def check_radial_embedding_returns_pair(residual, selector):
    graph = _graph(residual)
    sender, receiver = graph["edge_index"]
    vectors = graph["positions"][receiver] - graph["positions"][sender] + graph["shifts"]
    lengths = vectors.norm(dim=-1, keepdim=True)  # [n_edges, 1]
    embedding = residual.radial_embedding
    atomic_numbers = torch.tensor(Z)[graph["node_attrs"].argmax(dim=1)]
    out = embedding(lengths, graph["node_attrs"], graph["edge_index"], atomic_numbers)
    assert isinstance(out, tuple) and len(out) == 2
    features, cutoff = out
    assert features.shape == (lengths.shape[0], embedding.out_dim)
    assert cutoff is None or cutoff.shape == lengths.shape


class _RecordingConvolution(torch.nn.Module):
    """A ``conv_tp`` for the ``conv_fusion`` branch: e3nn's product, summed over neighbours."""

    def __init__(self, tp: torch.nn.Module) -> None:
        super().__init__()
        self.tp = tp
        self.shapes: list[tuple[tuple[int, ...], ...]] = []

    def forward(self, node_feats, edge_attrs, tp_weights, edge_index):
        self.shapes.append(tuple(tuple(t.shape) for t in (node_feats, edge_attrs, edge_index)))
        messages = self.tp(node_feats[edge_index[0]], edge_attrs, tp_weights)  # [n_edges, ...]
        summed = messages.new_zeros(node_feats.shape[0], messages.shape[1])
        return summed.index_add(0, edge_index[1], messages)  # [n_nodes, irreps_out]


def check_conv_fusion_hook(residual, selector):
    graph = _graph(selector)
    with quiet_model_construction():
        fused = copy.deepcopy(selector)
    recorders = []
    for block in fused.interactions:
        block.conv_tp = _RecordingConvolution(block.conv_tp)
        block.conv_fusion = "contract-test"
        recorders.append(block.conv_tp)
    expected = selector(dict(graph), compute_force=False)["energy"]
    energy = fused(dict(graph), compute_force=False)["energy"]
    torch.testing.assert_close(energy, expected, rtol=0, atol=1e-10)
    n_nodes, n_edges = graph["positions"].shape[0], graph["edge_index"].shape[1]
    for recorder in recorders:
        ((nodes, edge_attrs, edge_index),) = recorder.shapes
        assert nodes[0] == n_nodes and edge_attrs[0] == n_edges and edge_index == (2, n_edges)


def check_model_outputs(residual, selector):
    graph = _graph(residual)
    out = residual(dict(graph), training=False, compute_force=True, compute_stress=True)
    n_atoms, n_graphs = graph["positions"].shape[0], int(graph["ptr"].numel()) - 1
    width = sum(product.linear.irreps_out.dim for product in residual.products)
    assert out["energy"].shape == (n_graphs,) and out["node_energy"].shape == (n_atoms,)
    assert out["forces"].shape == (n_atoms, 3) and out["stress"].shape == (n_graphs, 3, 3)
    assert out["node_feats"].shape == (n_atoms, width)


def check_selector_has_no_residual(residual, selector):
    residuals: dict[str, object] = {}
    for name, model in (("residual", residual), ("selector", selector)):
        hooks = [
            block.register_forward_hook(
                lambda module, args, output, key=f"{name}.{t}": residuals.update({key: output[1]})
            )
            for t, block in enumerate(model.interactions)
        ]
        try:
            model(dict(_graph(model)), compute_force=False)
        finally:
            for hook in hooks:
                hook.remove()
    assert residuals["selector.0"] is None and isinstance(residuals["selector.1"], torch.Tensor)
    assert all(isinstance(residuals[f"residual.{t}"], torch.Tensor) for t in (0, 1))


def check_contraction_weight_orders(residual, selector):
    for model in (residual, selector):
        for product in model.products:
            for contraction in product.symmetric_contractions.contractions:
                corr = contraction.correlation
                orders = [(corr, contraction.weights_max)]
                orders += [(corr - 1 - k, w) for k, w in enumerate(contraction.weights)]
                assert sorted(nu for nu, _ in orders) == list(range(1, corr + 1))
                for nu, weight in orders:
                    params = getattr(contraction, f"U_matrix_{nu}").shape[-1]
                    assert weight.shape == (len(Z), params, contraction.num_features)


def check_config_round_trip(residual, selector):
    for model in (residual, selector):
        config = mace_config.describe_mace_model(model)
        rebuilt = mace_config.build_mace_model(config)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == shapes


BEHAVIOUR_CHECKS = {
    "radial_embedding_returns_pair": check_radial_embedding_returns_pair,
    "conv_fusion_hook": check_conv_fusion_hook,
    "model_outputs": check_model_outputs,
    "selector_has_no_residual": check_selector_has_no_residual,
    "contraction_weight_orders": check_contraction_weight_orders,
    "config_round_trip": check_config_round_trip,
}


def test_every_listed_behaviour_has_a_check():
    assert set(BEHAVIOUR_CHECKS) == set(BEHAVIOURS)


@pytest.mark.parametrize("behaviour", sorted(BEHAVIOUR_CHECKS))
def test_behaviour(behaviour, residual, selector):
    BEHAVIOUR_CHECKS[behaviour](residual, selector)
