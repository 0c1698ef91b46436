"""TrainConfig and LossWeights: impossible settings are one clear error naming field and flag."""

from __future__ import annotations

import pytest

from macelerate.errors import MacelerateError
from macelerate.train.config import TrainConfig
from macelerate.train.errors import TrainConfigError
from macelerate.train.losses import LossWeights


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"epochs": 0}, "epochs \\(--epochs\\) must be an integer >= 1, got 0"),
        ({"batch_size": 0}, "batch_size \\(--batch-size\\) must be an integer >= 1, got 0"),
        ({"lr": 0.0}, "lr \\(--lr\\) must be a finite number > 0"),
        ({"lr": float("nan")}, "lr \\(--lr\\) must be a finite number > 0, got nan"),
        ({"val_fraction": 1.0}, "val_fraction \\(--val-fraction\\) must be in \\[0, 1\\)"),
        ({"val_fraction": -0.1}, "val_fraction"),
        ({"ema_decay": 1.0}, "ema_decay \\(--ema-decay\\) must be in \\[0, 1\\)"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"min_lr_ratio": 2.0}, "min_lr_ratio"),
        ({"max_steps": 0}, "max_steps \\(--max-steps\\)"),
        ({"checkpoint_every": 0}, "checkpoint_every"),
        ({"teacher_weight": 1.5}, "teacher_weight"),
        ({"max_bad_batches": 0}, "max_bad_batches \\(--max-bad-batches\\)"),
        ({"schedule": "linear"}, "schedule \\(--schedule\\) must be cosine, plateau or constant"),
        ({"dtype": "float16"}, "dtype"),
        ({"resume": True}, "resume needs checkpoint_path: pass --checkpoint STATE"),
    ],
)
def test_impossible_settings_are_one_clear_error(changes, message):
    with pytest.raises(TrainConfigError, match="invalid training settings: " + message):
        TrainConfig(**changes)


def test_all_problems_are_named_at_once():
    with pytest.raises(MacelerateError, match="epochs .*; batch_size .*; val_fraction"):
        TrainConfig(epochs=0, batch_size=0, val_fraction=1.0)


def test_bad_loss_weights_and_unknown_keys():
    with pytest.raises(TrainConfigError, match="loss weight forces must be a finite number >= 0"):
        LossWeights(forces=-1.0)
    with pytest.raises(TrainConfigError, match="huber_delta \\(--huber-delta\\) must be > 0"):
        LossWeights(huber_delta=0.0)
    with pytest.raises(TrainConfigError, match="unknown LossWeights keys \\['force'\\]"):
        TrainConfig.from_dict({"loss": {"force": 1.0}})
    config = TrainConfig(max_bad_batches=3)
    assert TrainConfig.from_dict(config.to_dict()) == config
