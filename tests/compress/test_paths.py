"""Convolution paths: listing, removal (exact and skipped by the runtime), scoring, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate import load
from macelerate.compress.paths import (
    conv_paths,
    dead_path_masks,
    least_important_paths,
    path_ablation_scores,
    remove_conv_paths,
)
from macelerate.testing import tiny_mace
from macelerate.train.loop import TrainConfig, train
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8]


@pytest.fixture(scope="module")
def model():
    return tiny_mace(ELEMENTS, channels=8, max_L=1, max_ell=2, seed=5)


@pytest.fixture(scope="module")
def structures():
    return ethanols(4)


def _forces(model, structures):
    return np.concatenate([load(model, dtype="float64").predict(a).forces for a in structures])


def test_every_instruction_is_a_path_with_its_cost(model):
    paths = conv_paths(model)
    instructions = [len(block.conv_tp.instructions) for block in model.interactions]
    assert len(paths) == sum(instructions)
    assert all(p.live for p in paths)  # a random model reads every message
    first = [p for p in paths if p.layer == 0]
    assert first[0].name == "0e x 0e -> 0e" and first[0].width == 8
    assert any(p.name == "0e x 2e -> 2e" and p.width == 40 for p in first)


def test_a_removed_path_no_longer_reaches_the_output(model, structures):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = next(p for p in conv_paths(model) if p.layer == 0 and p.name.endswith("2e"))
    removed = remove_conv_paths(model, [path])
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # input kept
    assert [p.live for p in conv_paths(removed)] == [p != path for p in conv_paths(model)]
    forces = _forces(removed, structures)
    assert np.abs(forces - _forces(model, structures)).max() > 1e-4
    # the path's radial-MLP columns no longer matter: scaling the whole last layer's columns of
    # that instruction changes nothing
    conv = removed.interactions[0].conv_tp
    start = sum(int(np.prod(i.path_shape)) for i in conv.instructions[: path.instruction])
    width = int(np.prod(conv.instructions[path.instruction].path_shape))
    mlp = removed.interactions[0].conv_tp_weights
    last = [m for n, m in mlp.named_children() if n.startswith("layer")][-1].weight
    with torch.no_grad():
        last[:, start : start + width] *= 7.0
    np.testing.assert_allclose(_forces(removed, structures), forces, rtol=0, atol=1e-12)


def test_the_runtime_skips_removed_paths_exactly(model, structures):
    paths = [p for p in conv_paths(model) if p.layer == 0 and p.width > 8]
    removed = remove_conv_paths(model, paths)
    potential = load(removed, dtype="float64")
    [record] = potential.transforms
    assert record.summary["skipped_paths"][0] == len(paths)
    graph = potential.build_graph(structures)
    data = dict(graph)
    data["positions"] = graph["positions"].clone()
    want = removed(data, compute_force=True)["forces"].detach()
    torch.testing.assert_close(potential.forward(graph)["forces"], want, rtol=0, atol=1e-12)


def test_ablation_scores_are_the_force_change_of_each_removal(model, structures):
    scores = path_ablation_scores(model, structures)
    assert set(scores) == set(conv_paths(model))
    full = _forces(model, structures)
    for path in list(scores)[:3]:
        change = _forces(remove_conv_paths(model, [path]), structures) - full
        assert scores[path] == pytest.approx(np.sqrt(np.mean(change**2)), rel=1e-9)
    dead = remove_conv_paths(model, list(scores)[:1])
    assert list(scores)[0] not in path_ablation_scores(dead, structures)  # dead: not scored
    chosen = least_important_paths(scores, 2)
    ratio = {p: scores[p] / p.width for p in scores}
    assert [ratio[p] for p in chosen] == sorted(ratio.values())[:2]
    with pytest.raises(ValueError, match="calibration structures"):
        path_ablation_scores(model, [])
    with pytest.raises(ValueError, match="at least one must stay"):
        least_important_paths(scores, len(scores))
    with pytest.raises(ValueError, match="energy does not depend on the positions"):
        remove_conv_paths(model, list(scores))


def test_training_keeps_removed_paths_removed_only_when_asked(model, structures):
    path = next(p for p in conv_paths(model) if p.layer == 1 and p.width > 8)
    removed = remove_conv_paths(model, [path])
    masks = dead_path_masks(removed)
    [(name, keep)] = masks.items()
    weight = dict(removed.named_parameters())[name]
    assert torch.equal(weight[~keep], torch.zeros_like(weight[~keep])) and keep.any()
    labelled = label_structures(load(tiny_mace(ELEMENTS, channels=8, seed=6)), structures)
    settings = {"epochs": 2, "batch_size": 2, "progress": False, "lr": 1e-2}
    kept, _ = train(removed, labelled, config=TrainConfig(**settings, keep_dead_paths=True))
    regrown, _ = train(removed, labelled, config=TrainConfig(**settings))
    index = conv_paths(model).index(path)
    assert not conv_paths(kept)[index].live
    assert conv_paths(regrown)[index].live  # without the flag, training revives the path
