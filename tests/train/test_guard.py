"""Non-finite training: bad batches are skipped and counted, runs stop, bad weights never land."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

import macelerate.train.data as train_data
import macelerate.train.run as run_module
from macelerate import load
from macelerate.data.labels import LabelKeys
from macelerate.testing import tiny_mace
from macelerate.train.config import TrainConfig
from macelerate.train.data import LabelledData, model_graph_options
from macelerate.train.errors import TrainingDivergedError
from macelerate.train.guard import nonfinite_entries, require_finite
from macelerate.train.loop import train, training_copy
from macelerate.train.run import TrainingRun
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8]
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def labelled():
    return label_structures(load(tiny_mace(ELEMENTS, seed=1), dtype="float64"), ethanols(4))


def _run(config: TrainConfig, structures) -> TrainingRun:
    model, _ = training_copy(tiny_mace(ELEMENTS, seed=2), config)
    options = model_graph_options(model)
    data = LabelledData(structures, keys=LabelKeys(), graph_options=options)
    return TrainingRun(model, data, None, config)


def _snapshot(run: TrainingRun) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in run.model.state_dict().items()}


def test_a_nan_batch_is_skipped_without_optimiser_or_ema_update(labelled):
    run = _run(TrainConfig(batch_size=2, **QUIET), labelled)
    run.train_data.labels[1] = replace(run.train_data.labels[1], energy=math.nan)
    before, shadow = _snapshot(run), {k: v.clone() for k, v in run.ema.shadow.items()}
    values = run.optimisation_step(run.train_data.batch([0, 1]))
    assert values["skipped"] == 1.0 and run.bad_batches == 1 and run.step == 1
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())
    assert all(torch.equal(shadow[k], v) for k, v in run.ema.shadow.items())
    assert run.ema.num_updates == 0 and not run.optimizer.state  # AdamW never stepped
    values = run.optimisation_step(run.train_data.batch([2, 3]))
    assert values["skipped"] == 0.0 and run.bad_batches == 1 and run.ema.num_updates == 1
    assert not torch.equal(before["readouts.0.linear.weight"],
                           run.model.state_dict()["readouts.0.linear.weight"])  # fmt: skip


def _poisoned(monkeypatch, bad_index: int) -> None:
    """Give structure ``bad_index`` a NaN energy behind the label checks (a stand-in for any
    batch whose loss turns NaN)."""
    read = train_data.energy_label

    def energy_label(atoms, key, *, index, path):
        value = read(atoms, key, index=index, path=path)
        return math.nan if index == bad_index else value

    monkeypatch.setattr(train_data, "energy_label", energy_label)


def test_rare_bad_batches_are_counted_and_the_model_stays_finite(labelled, monkeypatch):
    _poisoned(monkeypatch, 0)
    config = TrainConfig(epochs=3, batch_size=2, val_fraction=0.0, max_bad_batches=5, **QUIET)
    trained, report = train(tiny_mace(ELEMENTS, seed=2), labelled, config=config)
    assert report.skipped_batches == 3  # one batch per epoch holds structure 0
    assert [r["skipped_batches"] for r in report.history] == [1, 1, 1]
    assert report.steps == 6
    assert not nonfinite_entries(trained.state_dict())


def test_too_many_bad_batches_stop_the_run_and_keep_the_last_good_state(
    labelled, monkeypatch, tmp_path
):
    state = tmp_path / "state.pt"
    options = {"batch_size": 2, "val_fraction": 0.0, "checkpoint_path": str(state), **QUIET}
    train(tiny_mace(ELEMENTS, seed=2), labelled, config=TrainConfig(epochs=1, **options))
    good = state.read_bytes()
    real_loss = run_module.batch_loss

    def nan_loss(model, batch, weights):  # every batch from now on diverges
        terms = real_loss(model, batch, weights)
        return {**terms, "total": terms["total"] * math.nan}

    monkeypatch.setattr(run_module, "batch_loss", nan_loss)
    config = TrainConfig(epochs=3, resume=True, max_bad_batches=1, **options)
    with pytest.raises(TrainingDivergedError, match=(
        r"training stopped: 1 batches had a NaN/inf loss or gradient \(the last at step 3, "
        r"epoch 2.*the last good training state stays in .*state.pt.*lower the learning rate"
    )):  # fmt: skip
        train(tiny_mace(ELEMENTS, seed=2), labelled, config=config)
    assert state.read_bytes() == good


def test_divergence_from_a_huge_learning_rate_is_an_error(labelled):
    config = TrainConfig(epochs=4, batch_size=2, lr=1e4, val_fraction=0.0, max_bad_batches=2,
                         **QUIET)  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="stopped: 2 batches had a NaN/inf loss"):
        train(tiny_mace(ELEMENTS, seed=2), labelled, config=config)


def test_a_state_with_non_finite_weights_is_never_written(labelled, tmp_path):
    state = tmp_path / "state.pt"
    state.write_bytes(b"previous")
    config = TrainConfig(batch_size=2, checkpoint_path=str(state), **QUIET)
    run = _run(config, labelled)
    with torch.no_grad():
        next(run.model.parameters())[0] = math.inf
    with pytest.raises(TrainingDivergedError, match="the training state .* holds NaN/inf.*"
                       "previous .*state.pt is unchanged"):  # fmt: skip
        run.save()
    assert state.read_bytes() == b"previous"


def test_nonfinite_entries_names_the_tensors():
    tree = {"model": {"w": torch.tensor([1.0, math.nan]), "n": torch.tensor([3])},
            "ema": None, "opt": [torch.ones(2), torch.tensor([math.inf])]}  # fmt: skip
    assert nonfinite_entries(tree) == ["model.w", "opt.1"]
    with pytest.raises(TrainingDivergedError, match="model.w, opt.1"):
        require_finite(tree, what="x", kept="y")
    require_finite({"w": torch.zeros(3)}, what="x", kept="y")
