"""Sparse training: SET/RigL masks, their schedule, exact resume, and the honest report."""

from __future__ import annotations

import pytest
import torch

from macelerate import load
from macelerate.testing import tiny_mace
from macelerate.train.errors import TrainConfigError
from macelerate.train.loop import TrainConfig, train, training_copy
from macelerate.train.sparsity import (
    GROUP_PATTERNS,
    SparseMasks,
    SparsityConfig,
    masked_parameter_names,
)
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8, 14]
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def labelled():
    teacher = load(tiny_mace(ELEMENTS, seed=1), dtype="float64")
    return label_structures(teacher, ethanols(8))


@pytest.fixture
def trainee():
    model, _ = training_copy(tiny_mace(ELEMENTS, seed=2), TrainConfig(**QUIET))
    return model


def test_groups_name_the_radial_mlps_and_equivariant_linears(trainee):
    radial = masked_parameter_names(trainee, ("radial",))
    linear = masked_parameter_names(trainee, ("linear",))
    assert radial and all(".conv_tp_weights.layer" in n for n in radial)
    assert {n.split(".")[-2] for n in linear} == {"linear_up", "linear", "skip_tp"}
    assert any(n.startswith("products.") for n in linear)
    assert not set(radial) & set(linear)
    assert all(
        not any(p.search(n) for p in GROUP_PATTERNS.values())
        for n, _ in trainee.named_parameters()
        if "symmetric_contractions" in n or "readouts" in n or "node_embedding" in n
    )


def test_masks_start_at_the_target_and_zero_the_weights(trainee):
    masks = SparseMasks(trainee, SparsityConfig(target=0.75), total_steps=100, seed=0)
    named = dict(trainee.named_parameters())
    for name, mask in masks.masks.items():
        assert mask.shape == named[name].shape
        assert int(mask.sum()) == max(1, round(mask.numel() * 0.25))
        assert torch.all(named[name][~mask] == 0)


def test_rigl_drops_the_smallest_active_and_grows_the_largest_gradient(trainee):
    config = SparsityConfig(method="rigl", target=0.5, groups=("radial",), drop_fraction=0.5,
                            update_every=1, end_fraction=1.0)  # fmt: skip
    masks = SparseMasks(trainee, config, total_steps=4, seed=3)
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=1e-3)
    name = masks.names[0]
    parameter = dict(trainee.named_parameters())[name]
    before = masks.masks[name].clone().view(-1)
    with torch.no_grad():
        parameter.view(-1)[before] = torch.arange(1, int(before.sum()) + 1, dtype=parameter.dtype)
    parameter.grad = torch.arange(parameter.numel(), dtype=parameter.dtype).view_as(parameter)
    optimizer.state[parameter] = {"exp_avg": torch.ones_like(parameter),
                                  "exp_avg_sq": torch.ones_like(parameter)}  # fmt: skip
    share = masks.drop_share(2)
    masks.update(trainee, optimizer, step=2)
    after = masks.masks[name].view(-1)
    active = before.nonzero().view(-1)
    count = int(share * active.numel())
    assert count > 0 and int(after.sum()) == int(before.sum())
    dropped = active[:count]  # the smallest magnitudes were set to 1..count
    assert not after[dropped].any() and after[active[count:]].all()
    inactive = (~before).nonzero().view(-1)
    grown = inactive[-count:]  # the gradient grows with the flat index
    assert after[grown].all() and not after[inactive[:-count]].any()
    assert torch.all(parameter.detach().view(-1)[grown] == 0)
    assert torch.all(optimizer.state[parameter]["exp_avg"].view(-1)[grown] == 0)


def test_set_grows_only_into_entries_that_were_inactive(trainee):
    config = SparsityConfig(method="set", target=0.6, drop_fraction=0.4, update_every=1)
    masks = SparseMasks(trainee, config, total_steps=10, seed=0)
    before = {n: m.clone() for n, m in masks.masks.items()}
    moved = masks.update(trainee, torch.optim.AdamW(trainee.parameters()), step=1)
    assert moved > 0
    for name, mask in masks.masks.items():
        grown = mask & ~before[name]
        assert int(mask.sum()) == int(before[name].sum())
        assert int(grown.sum()) == int((before[name] & ~mask).sum())


def test_drop_share_decays_to_zero_at_the_end_fraction(trainee):
    config = SparsityConfig(drop_fraction=0.3, end_fraction=0.5, update_every=10)
    masks = SparseMasks(trainee, config, total_steps=100, seed=0)
    assert masks.drop_share(0) == pytest.approx(0.3)
    assert masks.drop_share(25) == pytest.approx(0.15)
    assert masks.drop_share(50) == 0.0 and not masks.due(50) and not masks.due(60)
    assert masks.due(10) and not masks.due(0) and not masks.due(15)


@pytest.mark.parametrize("method", ["rigl", "set"])
def test_sparse_training_learns_and_returns_an_exactly_sparse_model(labelled, method):
    student = tiny_mace(ELEMENTS, seed=2)
    sparsity = SparsityConfig(method=method, target=0.7, update_every=2)
    config = TrainConfig(epochs=3, batch_size=2, lr=1e-2, sparsity=sparsity, **QUIET)
    trained, report = train(student, labelled[:6], config=config, val_structures=labelled[6:])
    summary = report.sparsity
    assert summary["method"] == method and summary["mask_updates"] > 0
    for group in ("radial", "linear"):
        assert summary["groups"][group]["tensors"] > 0
        assert summary["groups"][group]["sparsity"] == pytest.approx(0.7, abs=0.02)
    assert "not time" in summary["note"]
    named = dict(trained.named_parameters())
    zeros = sum(int((named[n] == 0).sum()) for n in masked_parameter_names(trained, ("radial",)))
    assert (
        zeros == summary["groups"]["radial"]["parameters"] - summary["groups"]["radial"]["nonzero"]
    )
    history = report.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert report.export_max_force_diff < 1e-10  # the masked EMA weights were exported


def test_sparse_run_resumes_exactly(labelled, tmp_path):
    student = tiny_mace(ELEMENTS, seed=2)
    sparsity = SparsityConfig(method="rigl", target=0.6, update_every=2)
    options = dict(epochs=2, batch_size=2, lr=5e-3, seed=1, sparsity=sparsity, **QUIET)

    def run(folder, **changes):
        config = TrainConfig(**{**options, "checkpoint_path": str(folder / "s.pt"), **changes})
        return train(student, labelled[:6], config=config, val_structures=labelled[6:])

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    expected, _ = run(tmp_path / "a")
    run(tmp_path / "b", max_steps=4)  # killed after 2 mask updates' worth of steps
    resumed, report = run(tmp_path / "b", resume=True)
    assert report.resumed_from_step == 4
    for (name, a), (_, b) in zip(expected.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)


def test_bad_sparsity_settings_name_the_option():
    with pytest.raises(TrainConfigError, match=r"--sparsity\) must be in \(0, 1\)"):
        SparsityConfig(target=1.0)
    with pytest.raises(TrainConfigError, match="--sparse-groups"):
        SparsityConfig(groups=("radial", "readout"))
    with pytest.raises(TrainConfigError, match="--sparse\\) must be set or rigl"):
        SparsityConfig(method="magnitude")  # type: ignore[arg-type]
    round_trip = TrainConfig(sparsity=SparsityConfig(method="set")).to_dict()
    assert TrainConfig.from_dict(round_trip).sparsity == SparsityConfig(method="set")


def test_a_model_without_maskable_layers_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(TrainConfigError, match="no parameter of the groups"):
        SparseMasks(model, SparsityConfig(), total_steps=10, seed=0)
