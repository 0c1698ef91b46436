"""The layout records of tiny mace-torch models: spaces, one record per weight, block keys."""

from __future__ import annotations

import copy

import pytest
import torch

from macelerate._mace import import_mace, quiet_model_construction
from macelerate.errors import ModelFileError
from macelerate.mace.config import build_mace_model
from macelerate.mace.layout import (
    ContractionWeight,
    DenseWeight,
    E3nnWeight,
    read_layout,
    selects_message,
)
from macelerate.testing import tiny_mace_config

import_mace()
from e3nn import o3  # noqa: E402

Z = [1, 6, 8]  # the elements of the residual and selector fixtures (tests/mace/conftest.py)


@pytest.mark.parametrize("name", ["residual", "selector"])
def test_one_record_per_parameter_with_its_shape(name, request):
    model = request.getfixturevalue(name)
    layout = read_layout(model)
    params = dict(model.named_parameters())
    names = [record.parameter for record in layout.weights]
    assert sorted(names) == sorted(params) and len(set(names)) == len(names)
    for record in layout.weights:
        param = params[record.parameter]
        if isinstance(record, E3nnWeight):
            numel = sum(p.numel for p in record.paths)
            assert param.numel() == record.rows * numel, record.parameter
            assert record.per_edge == (record.kind == "tensor_product")
        else:
            assert tuple(param.shape) == record.shape, record.parameter
    assert (layout.num_channels, layout.max_L, layout.max_ell) == (8, 1, 2)


def test_spaces_and_operands(selector):
    layout = read_layout(selector)
    assert list(layout.spaces) == [
        "node.0", "edge.0", "selector.0", "message.0", "node.1", "edge.1", "message.1", "node.2"
    ]  # fmt: skip
    records = {record.parameter: record for record in layout.weights}
    skip0, skip1 = (
        records["interactions.0.skip_tp.weight"],
        records["interactions.1.skip_tp.weight"],
    )
    assert selects_message(selector.interactions[0]) and skip0.kind == "skip"
    assert [op.space for op in skip0.operands] == ["selector.0", None, "message.0"]
    assert [op.space for op in skip1.operands] == ["node.1", None, "node.2"]
    edge_tp = records["interactions.1.conv_tp_weights.layer2.weight"]
    assert edge_tp.kind == "tensor_product" and edge_tp.module == "interactions.1.conv_tp"
    assert edge_tp.rows == 16 and edge_tp.per_edge
    edge, sh, mid = edge_tp.operands
    assert (edge.space, sh.space, sh.degree_space, mid.space) == (
        "edge.1",
        None,
        "message.1",
        "edge.1",
    )
    assert mid.parts[0] == ((0, 1, 0, 1, 0, 1),)  # one path per output entry: 0e x 0e -> 0e
    linear = records["interactions.1.linear.weight"]
    assert linear.operands[0].parts == mid.parts and linear.operands[1].space == "message.1"
    hidden = records["interactions.1.conv_tp_weights.layer0.weight"]
    assert isinstance(hidden, DenseWeight) and hidden.shape == (6, 16)
    readout = records["readouts.1.linear_2.weight"]
    assert [op.space for op in readout.operands] == [None, None]


def test_contraction_records_know_their_correlation_order(residual):
    layout = read_layout(residual)
    contractions = [r for r in layout.weights if isinstance(r, ContractionWeight)]
    product = residual.products[0].symmetric_contractions.contractions[1]  # irrep 1o
    mine = [
        r
        for r in contractions
        if r.module.endswith("products.0.symmetric_contractions.contractions.1")
    ]
    assert [(r.parameter.split(".", 5)[-1], r.nu) for r in mine] == [
        ("weights_max", 3), ("weights.0", 2), ("weights.1", 1)
    ]  # fmt: skip
    for record in mine:
        assert record.irrep_out == (1, -1) and record.operand.space == "message.0"
        assert record.shape[1] == product.U_tensors(record.nu).shape[-1]
        assert record.key == ("products.0", (1, -1), record.nu)


def test_unreadable_layouts_are_refused(residual):
    with quiet_model_construction():
        broken = copy.deepcopy(residual)
        broken.interactions[1].linear = o3.Linear("16x0e", "8x0e").to(torch.float64)
    with pytest.raises(ModelFileError, match="edge path"):
        read_layout(broken)
    with pytest.raises(ModelFileError, match="interaction_cls"):
        read_layout(_density_model())


def _density_model() -> torch.nn.Module:
    config = tiny_mace_config(Z) | {"interaction_cls": "RealAgnosticDensityInteractionBlock"}
    return build_mace_model(config)
