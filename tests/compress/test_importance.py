"""Block importance: shapes, determinism, dead channels, magnitude by hand, no mutation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase.build import molecule

from macelerate._mace import quiet_model_construction
from macelerate.compress.importance import block_importance, channel_spaces
from macelerate.compress.scoring import weight_slices
from macelerate.data.labels import LabelKeys
from macelerate.errors import DataFileError
from macelerate.testing import tiny_mace

Z = [1, 6, 8]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return tiny_mace(Z, seed=11)


def _frames(n: int = 2):
    frames = []
    for seed in range(n):
        atoms = molecule("CH3CH2OH")
        atoms.rattle(0.1, seed=seed)
        atoms.info["ref_energy"] = -5.0 + seed
        atoms.arrays["ref_forces"] = np.full((len(atoms), 3), 0.1)
        frames.append(atoms)
    return frames


def _views(module, weight=None):
    return [(ins, view) for _, ins, view in module.weight_views(weight, yield_instruction=True)]


def test_channel_spaces_and_weight_slices(model):
    spaces = channel_spaces(model)
    assert list(spaces) == [
        "node.0",
        "edge.0",
        "message.0",
        "node.1",
        "edge.1",
        "message.1",
        "node.2",
    ]
    assert spaces["node.1"] == ((8, 0, 1), (8, 1, -1)) and spaces["node.2"] == ((8, 0, 1),)
    assert [ell for _, ell, _ in spaces["message.1"]] == [0, 1, 2]
    params = dict(model.named_parameters())
    slices = weight_slices(model)
    for sl in slices:
        for index in (sl.channels, sl.degrees):
            assert index is None or index.numel() == params[sl.parameter].numel()
    untouched = set(params) - {sl.parameter for sl in slices}
    assert all(
        "conv_tp_weights.layer0" in n or "conv_tp_weights.layer1" in n or "linear_2" in n
        for n in untouched
    ), untouched


@pytest.mark.parametrize("method", ["magnitude", "random", "taylor"])
def test_score_shapes(model, method):
    scores = block_importance(model, _frames(1), method=method)
    assert scores.method == method and scores.num_channels == 8
    assert (scores.max_L, scores.max_ell) == (1, 2)
    assert all(len(v) == 8 for v in scores.channel_scores.values())
    assert set(scores.degree_scores["node.1"]) == {0, 1}
    assert set(scores.degree_scores["message.0"]) == {0, 1, 2}
    assert all(np.isfinite(v).all() and min(v) >= 0 for v in scores.channel_scores.values())
    assert scores.to_dict()["degree_scores"]["node.1"].keys() == {"0", "1"}


def test_random_scores_are_seeded(model):
    a, b = (block_importance(model, method="random", seed=3) for _ in range(2))
    c = block_importance(model, method="random", seed=4)
    assert a.channel_scores == b.channel_scores and a.channel_scores != c.channel_scores


def test_magnitude_by_hand(model):
    """node.0 channel c: embedding output column, linear_up / skip_tp input rows of layer 0."""
    scores = block_importance(model, method="magnitude")
    block = model.interactions[0]
    for c in (0, 5):
        total = sum(view[:, c].pow(2).sum() for _, view in _views(model.node_embedding.linear))
        total += sum(view[c].pow(2).sum() for _, view in _views(block.linear_up))
        total += sum(view[c].pow(2).sum() for _, view in _views(block.skip_tp))
        assert scores.channel_scores["node.0"][c] == pytest.approx(
            float(total.detach().sqrt()), rel=1e-12
        )


def _kill_edge_channel(model, t: int, c: int, *, readers: bool):
    with quiet_model_construction():
        dead = copy.deepcopy(model)
    block = dead.interactions[t]
    with torch.no_grad():
        for _, view in _views(block.linear_up):
            view[:, c] = 0.0
        if readers:
            for _, view in _views(block.conv_tp, block.conv_tp_weights[-1].weight):
                view[:, c] = 0.0
            for _, view in _views(block.linear):
                view[c] = 0.0
    return dead


def test_dead_channels_score_zero(model):
    scores = block_importance(_kill_edge_channel(model, 1, 3, readers=True), method="magnitude")
    assert scores.channel_scores["edge.1"][3] == 0.0
    assert min(np.delete(scores.channel_scores["edge.1"], 3)) > 0
    dead = _kill_edge_channel(model, 1, 3, readers=False)  # writers zero: readers see zeros
    for labels in ("model", LabelKeys(energy="ref_energy", forces="ref_forces")):
        taylor = block_importance(dead, _frames(1), method="taylor", labels=labels, probes=2)
        assert taylor.channel_scores["edge.1"][3] == 0.0
        assert min(np.delete(taylor.channel_scores["edge.1"], 3)) > 0


def test_taylor_labels_and_no_mutation(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = [p.requires_grad for p in model.parameters()]
    keys = LabelKeys(energy="ref_energy", forces="ref_forces")
    labelled = block_importance(model, _frames(), method="taylor", labels=keys)
    own = block_importance(model, _frames(), method="taylor", labels="model", seed=1)
    assert labelled.labels == "labels" and own.labels == "model"
    assert labelled.channel_scores != own.channel_scores
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert [p.requires_grad for p in model.parameters()] == grads
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(DataFileError, match="missing_key"):
        block_importance(
            model,
            _frames(1),
            method="taylor",
            labels=LabelKeys(energy="missing_key", forces="ref_forces"),
        )
    with pytest.raises(ValueError, match="calibration"):
        block_importance(model, [], method="taylor")


def test_potential_input_scores_like_the_module(model):
    import macelerate

    a = block_importance(model, method="magnitude")
    b = block_importance(macelerate.load(model), method="magnitude")
    assert a.channel_scores == b.channel_scores
