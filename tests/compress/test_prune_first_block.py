"""Pruning MACE models with non-residual ``RealAgnosticInteractionBlock`` interactions (mace-torch's
default first block): its ``skip_tp`` acts on the message, giving a ``selector.t`` channel space."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from macelerate._mace import quiet_model_construction
from macelerate.compress import (
    apply_plan,
    block_importance,
    channel_spaces,
    plan_pruning,
    prune,
    uniform_plan,
)
from macelerate.compress.scoring import weight_slices
from macelerate.mace.config import build_mace_model, describe_mace_model
from macelerate.mace.layout import DERIVED_STATE, check_supported
from macelerate.testing import tiny_mace_config
from tests.compress.test_prune import (
    Z,
    _check_block_by_block,
    _evaluate,
    _random_plan,
    _structures,
    _views,
    assert_exactly_equivariant,
    assert_same_in_mace_calculator,
)


def _mace(*, seed: int, everywhere: bool = False, **options) -> torch.nn.Module:
    """A tiny random MACE whose first (or every, ``everywhere``) interaction is non-residual."""
    config = tiny_mace_config(Z, **options)
    config["interaction_cls_first"] = "RealAgnosticInteractionBlock"
    if everywhere:
        config["interaction_cls"] = "RealAgnosticInteractionBlock"
    torch.manual_seed(seed)
    return build_mace_model(config).eval()


@pytest.fixture(scope="module")
def first() -> torch.nn.Module:
    """mace_run_train's default layout: 8 channels, hidden L <= 1, edge ell <= 2."""
    return _mace(seed=21)


@pytest.fixture(scope="module")
def first_wide() -> torch.nn.Module:
    """Non-residual first block, 8 channels, hidden L <= 2, edge ell <= 3."""
    return _mace(seed=22, max_L=2, max_ell=3)


def test_selector_space_and_weight_slices(first):
    check_supported(describe_mace_model(first))
    assert first.products[0].use_sc is False and first.products[1].use_sc is True
    spaces = channel_spaces(first)
    assert list(spaces) == [
        "node.0",
        "edge.0",
        "selector.0",
        "message.0",
        "node.1",
        "edge.1",
        "message.1",
        "node.2",
    ]
    assert spaces["selector.0"] == spaces["message.0"] == ((8, 0, 1), (8, 1, -1), (8, 2, 1))
    touched: dict[str, set[str]] = {}
    for sl in weight_slices(first):
        touched.setdefault(sl.parameter, set()).add(sl.space)
    assert touched["interactions.0.linear.weight"] == {"edge.0", "selector.0"}
    assert touched["interactions.0.skip_tp.weight"] == {"selector.0", "message.0"}
    assert touched["interactions.0.linear_up.weight"] == {"node.0", "edge.0"}
    assert touched["interactions.1.skip_tp.weight"] == {"node.1", "node.2"}  # residual block


def test_magnitude_by_hand(first):
    """selector.0 channel c: linear output column and skip_tp input rows; node.0 is no longer
    read by skip_tp; message.0 is written by skip_tp and read by the product."""
    scores = block_importance(first, method="magnitude")
    block, product = first.interactions[0], first.products[0]
    for c in (0, 5):
        selector = sum(view[:, c].pow(2).sum() for _, view in _views(block.linear))
        selector += sum(view[c].pow(2).sum() for _, view in _views(block.skip_tp))
        node = sum(view[:, c].pow(2).sum() for _, view in _views(first.node_embedding.linear))
        node += sum(view[c].pow(2).sum() for _, view in _views(block.linear_up))
        message = sum(view[..., c].pow(2).sum() for _, view in _views(block.skip_tp))
        message += sum(view[c].pow(2).sum() for _, view in _views(product.linear))
        for contraction in product.symmetric_contractions.contractions:
            message += sum(w[..., c].pow(2).sum() for w in contraction.parameters())
        for space, total in (("selector.0", selector), ("node.0", node), ("message.0", message)):
            assert scores.channel_scores[space][c] == pytest.approx(
                float(total.detach().sqrt()), rel=1e-12
            ), space


def test_dead_selector_channel_scores_zero(first):
    with quiet_model_construction():
        dead = copy.deepcopy(first)
    with torch.no_grad():
        for _, view in _views(dead.interactions[0].linear):
            view[:, 3] = 0.0  # writer of selector.0 channel 3: its readers see zeros
    taylor = block_importance(dead, _structures(), method="taylor", labels="model", probes=2)
    assert taylor.channel_scores["selector.0"][3] == 0.0
    assert min(np.delete(taylor.channel_scores["selector.0"], 3)) > 0
    with torch.no_grad():
        for _, view in _views(dead.interactions[0].skip_tp):
            view[3] = 0.0
    assert block_importance(dead, method="magnitude").channel_scores["selector.0"][3] == 0.0


def test_identity_plan_reproduces_the_model(first):
    pruned, report = apply_plan(first, uniform_plan(first, range(8)))
    (e0, f0), (e1, f1) = _evaluate(first, _structures()), _evaluate(pruned, _structures())
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-10)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-10)
    assert report.parameters_after == report.parameters_before and report.removed == ()
    assert report.macs_per_atom_after == report.macs_per_atom_before
    for (name, a), b in zip(first.state_dict().items(), pruned.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("everywhere", [False, True])
def test_channel_pruning_equals_zeroed_reference_block_by_block(first, everywhere):
    model = _mace(seed=23, everywhere=True) if everywhere else first
    plan = _random_plan(model, channels=5, seed=0)
    assert plan.kept_channels("selector.0") != plan.kept_channels("message.0")
    pruned, report = apply_plan(model, plan)
    assert report.parameters_after < report.parameters_before
    assert report.macs_per_atom_after < report.macs_per_atom_before
    assert ("selector.1" in channel_spaces(pruned)) == everywhere
    _check_block_by_block(model, pruned, plan)


@pytest.mark.parametrize(("max_L", "max_ell"), [(1, 2), (0, 1)])
def test_degree_pruning_equals_zeroed_reference(first_wide, max_L, max_ell):
    plan = _random_plan(first_wide, channels=6, seed=1, max_L=max_L, max_ell=max_ell)
    pruned, report = apply_plan(first_wide, plan)
    assert report.lstsq_residuals and all(r < 1e-12 for r in report.lstsq_residuals.values())
    assert [ell for _, ell, _ in channel_spaces(pruned)["selector.0"]] == list(range(max_ell + 1))
    assert report.macs_per_edge_after < report.macs_per_edge_before
    _check_block_by_block(first_wide, pruned, plan)


def test_pruned_model_is_exactly_equivariant(first_wide):
    plan = _random_plan(first_wide, channels=4, seed=2, max_L=1, max_ell=2)
    pruned, _ = apply_plan(first_wide, plan)
    assert_exactly_equivariant(pruned)


def test_pruned_model_runs_in_mace_calculator(first, tmp_path):
    from mace.modules import RealAgnosticInteractionBlock, ScaleShiftMACE

    pruned, _ = apply_plan(first, _random_plan(first, channels=3, seed=3, max_ell=1))
    assert type(pruned) is ScaleShiftMACE
    assert type(pruned.interactions[0]) is RealAgnosticInteractionBlock
    assert_same_in_mace_calculator(pruned, tmp_path / "pruned.model", _structures()[1])


def test_prune_from_a_potential_end_to_end(first):
    import macelerate

    model, report = prune(
        macelerate.load(first), channels=4, max_ell=1, importance="taylor",
        calibration=_structures(),
    )  # fmt: skip
    assert set(report.plan["kept"]) == set(channel_spaces(first))
    assert "edge ell=2" in report.removed and len(report.removed) == 8 * 4 + 1
    plan = _random_plan(first, channels=4, seed=4, max_ell=1)
    from_module, _ = apply_plan(first, plan)
    from_potential, _ = apply_plan(macelerate.load(first), plan)
    torch.testing.assert_close(
        _evaluate(from_potential, _structures()), _evaluate(from_module, _structures())
    )
    assert torch.isfinite(_evaluate(model, _structures())[1]).all()


@pytest.mark.slow
@pytest.mark.parametrize("max_ell", [None, 1])
def test_demo_checkpoint_prunes_exactly(max_ell):
    """The embedded go_small demo (mace_run_train's default layout, float32) in float64, with
    float64-exact derived constants: 16 -> 8 channels equals the zeroed reference."""
    from macelerate.demo.run import demo_model_path
    from macelerate.models.loading import read_model_file

    original = read_model_file(demo_model_path())[0]
    model = build_mace_model(describe_mace_model(original) | {"dtype": "float64"}).eval()
    fresh, state = model.state_dict(), original.state_dict()
    model.load_state_dict(
        {
            k: v if any(p in k for p in DERIVED_STATE) else state[k].to(v.dtype)
            for k, v in fresh.items()
        }
    )
    assert "selector.0" in channel_spaces(model)
    plan = plan_pruning(block_importance(model, method="magnitude"), channels=8, max_ell=max_ell)
    pruned, report = apply_plan(model, plan)
    assert report.parameters_before == 35776 and report.parameters_after < 25000
    assert all(r < 1e-12 for r in report.lstsq_residuals.values())
    _check_block_by_block(model, pruned, plan)
