"""Models whose interaction ``linear`` reads e3nn-simplified edge-path outputs, as older mace-torch
pickles store it (the GST checkpoint: ``128x0e+192x1o+...`` for 2 + 3 + ... paths of 64 channels):
they score and prune exactly like the same model with one linear input entry per path (issue 11
item 12: ``operands could not be broadcast`` in scoring, ``has no old path`` in the surgery)."""

from __future__ import annotations

import copy

import pytest
import torch

from macelerate._mace import import_mace, quiet_model_construction
from macelerate.compress import apply_plan, block_importance
from macelerate.compress.scoring import weight_slices
from macelerate.mace.layout import E3nnWeight, read_layout
from macelerate.testing import tiny_mace
from tests.compress.test_prune import (
    Z,
    _check_block_by_block,
    _evaluate,
    _random_plan,
    _structures,
    assert_exactly_equivariant,
)

import_mace()
from e3nn import o3  # noqa: E402


def _simplified(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` whose interactions' ``linear`` reads ``conv_tp.irreps_out.simplify()``
    (same flat weights: the merged entries concatenate the per-path blocks in order)."""
    with quiet_model_construction():
        merged = copy.deepcopy(model)
        for block in merged.interactions:
            old = block.linear
            new = o3.Linear(
                block.conv_tp.irreps_out.simplify(),
                old.irreps_out,
                internal_weights=True,
                shared_weights=True,
            ).to(old.weight.dtype)
            with torch.no_grad():
                new.weight.copy_(old.weight)
            block.linear = new
    return merged.eval()


@pytest.fixture(scope="module")
def unmerged() -> torch.nn.Module:
    """8 channels, hidden L <= 1 (repeated path outputs in layer 1), edge ell <= 2."""
    return tiny_mace(Z, seed=31)


@pytest.fixture(scope="module")
def merged(unmerged) -> torch.nn.Module:
    return _simplified(unmerged)


def test_simplified_copy_computes_the_same(unmerged, merged):
    block = merged.interactions[1]
    assert len(block.linear.irreps_in) < len(block.conv_tp.irreps_out)
    (e0, f0), (e1, f1) = _evaluate(unmerged, _structures()), _evaluate(merged, _structures())
    torch.testing.assert_close(e1, e0, rtol=0, atol=1e-12)
    torch.testing.assert_close(f1, f0, rtol=0, atol=1e-12)


def test_layout_reads_merged_blocks(merged):
    layout = read_layout(merged)
    linear = next(w for w in layout.weights if w.parameter == "interactions.1.linear.weight")
    assert isinstance(linear, E3nnWeight)
    first = linear.operands[0]
    assert first.space == "edge.1" and first.irreps[0] == (16, 0, 1)
    assert first.parts[0] == ((0, 1, 0, 1, 0, 1), (1, -1, 1, -1, 0, 1))  # 0e x 0e, 1o x 1o
    assert first.block_size(0) == 8
    for sl in weight_slices(layout):
        assert sl.channels is None or int(sl.channels.max()) < 8, sl.parameter


@pytest.mark.parametrize("method", ["magnitude", "random", "taylor"])
def test_scores_equal_those_of_the_unsimplified_model(unmerged, merged, method):
    a, b = (
        block_importance(m, _structures(), method=method, labels="model", probes=2)
        for m in (unmerged, merged)
    )
    for space, values in a.channel_scores.items():
        assert b.channel_scores[space] == pytest.approx(values, rel=1e-12, abs=1e-300), space
        assert b.degree_scores[space] == pytest.approx(a.degree_scores[space], rel=1e-12)


@pytest.mark.parametrize(
    ("channels", "max_L", "max_ell"), [(5, None, None), (6, 0, None), (4, None, 1)]
)
def test_pruning_equals_zeroed_reference_and_the_unsimplified_model(
    unmerged, merged, channels, max_L, max_ell
):
    plan = _random_plan(merged, channels=channels, seed=5, max_L=max_L, max_ell=max_ell)
    pruned, _ = apply_plan(merged, plan)
    _check_block_by_block(merged, pruned, plan)
    reference, _ = apply_plan(unmerged, plan)
    for (name, a), b in zip(reference.state_dict().items(), pruned.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-15, atol=0, msg=name)


def test_pruned_merged_model_is_exactly_equivariant(merged):
    pruned, _ = apply_plan(merged, _random_plan(merged, channels=4, seed=6, max_ell=1))
    assert_exactly_equivariant(pruned)
