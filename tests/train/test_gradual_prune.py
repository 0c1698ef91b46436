"""Incremental structured pruning during training: schedule, stages, resume, refusals."""

from __future__ import annotations

import pytest
import torch

from macelerate import load
from macelerate.compress import prune
from macelerate.compress.paths import conv_paths
from macelerate.testing import tiny_mace
from macelerate.train.errors import TrainConfigError
from macelerate.train.gradual_prune import (
    PruneStage,
    channel_schedule,
    gradual_prune,
    model_channels,
    path_schedule,
)
from macelerate.train.loop import TrainConfig
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8]
QUIET = {"progress": False, "batch_size": 2, "lr": 5e-3, "seed": 1}


@pytest.fixture(scope="module")
def wide():
    return tiny_mace(ELEMENTS, channels=16, seed=3)


@pytest.fixture(scope="module")
def labelled():
    return label_structures(load(tiny_mace(ELEMENTS, channels=16, seed=4)), ethanols(8))


def test_channel_schedule_shrinks_geometrically_to_the_target():
    assert channel_schedule(128, 32, 3) == [80, 48, 32]
    assert channel_schedule(128, 32, 1) == [32]
    widths = channel_schedule(16, 4, 4)
    assert widths[-1] == 4 and all(b < a for a, b in zip([16, *widths], widths))
    with pytest.raises(TrainConfigError, match="target channels < current"):
        channel_schedule(16, 16, 2)


def test_each_stage_prunes_then_trains_and_ends_in_a_plain_smaller_mace(wide, labelled):
    before = {k: v.clone() for k, v in wide.state_dict().items()}
    stages = [PruneStage(channels=12, steps=3), PruneStage(channels=8, steps=3)]
    config = TrainConfig(**QUIET)
    final, summary = gradual_prune(
        wide, labelled[:6], stages=stages, config=config, val_structures=labelled[6:]
    )
    assert model_channels(final) == 8
    one_shot, _ = prune(wide, channels=8, calibration=labelled[:6])
    assert [tuple(p.shape) for p in final.parameters()] == [
        tuple(p.shape) for p in one_shot.parameters()
    ]
    assert [s["channels"] for s in summary["stages"]] == [12, 8]
    assert all(s["trained_steps"] == 3 for s in summary["stages"])
    assert summary["stages"][0]["parameters"] > summary["stages"][1]["parameters"]
    assert summary["parameters_after"] < summary["parameters_before"]
    assert all(s["final_validation"]["val_forces_rmse"] > 0 for s in summary["stages"])
    assert all(torch.equal(v, before[k]) for k, v in wide.state_dict().items())
    load(final).predict(labelled[:1])  # a plain mace-torch model macelerate runs


def test_a_killed_gradual_run_resumes_to_the_same_model(wide, labelled, tmp_path):
    stages = [PruneStage(channels=12, steps=3), PruneStage(channels=8, steps=3)]

    def run(folder, resume=False, **changes):
        config = TrainConfig(**QUIET, checkpoint_path=str(folder / "state.pt"), resume=resume,
                             **changes)  # fmt: skip
        return gradual_prune(wide, labelled[:6], stages=stages, config=config,
                             val_structures=labelled[6:])  # fmt: skip

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    expected, _ = run(tmp_path / "a")
    killed = [stages[0], PruneStage(channels=8, steps=1)]  # stage 2 stopped after one step
    config = TrainConfig(**QUIET, checkpoint_path=str(tmp_path / "b" / "state.pt"))
    gradual_prune(wide, labelled[:6], stages=killed, config=config, val_structures=labelled[6:])
    resumed, summary = run(tmp_path / "b", resume=True)
    assert [s["resumed_from_step"] for s in summary["stages"]] == [3, 1]
    for (name, a), (_, b) in zip(expected.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)


def test_a_schedule_that_does_not_shrink_is_refused(wide, labelled):
    with pytest.raises(TrainConfigError, match="shrink at every stage, from 16 channels"):
        gradual_prune(wide, labelled, stages=[PruneStage(channels=8, steps=1),
                                              PruneStage(channels=8, steps=1)],
                      config=TrainConfig(**QUIET))  # fmt: skip


def test_path_schedule_spreads_the_removals():
    assert path_schedule(3, 2) == [1, 2]
    assert path_schedule(0, 3) == [0, 0, 0]
    assert sum(path_schedule(5, 3)) == 5


def test_stages_can_remove_convolution_paths_that_stay_removed(wide, labelled):
    stages = [PruneStage(channels=12, steps=3, remove_paths=1),
              PruneStage(channels=8, steps=3, remove_paths=1)]  # fmt: skip
    config = TrainConfig(**QUIET)
    final, summary = gradual_prune(
        wide, labelled[:6], stages=stages, config=config, val_structures=labelled[6:]
    )
    removed = [r["path"] for s in summary["stages"] for r in s["removed_paths"]]
    assert len(removed) == 2 and all(r["force_rms_change"] > 0 for s in summary["stages"]
                                     for r in s["removed_paths"])  # fmt: skip
    dead = [p.label for p in conv_paths(final) if not p.live]
    assert sorted(dead) == sorted(summary["removed_paths"]) == sorted(removed)
    assert len(summary["live_paths"]) == len(conv_paths(final)) - 2
