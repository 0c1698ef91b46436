"""Training: plain training, recovery fine-tuning after pruning, and distillation from a teacher.

::

    from macelerate.train import TrainConfig, LossWeights, train, label_structures
    trained, report = train(model, structures, config=TrainConfig(epochs=20))
    labelled = label_structures(teacher, structures, hessian_rows=2)

Names are imported from the submodules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "train": "macelerate.train.loop",
    "TrainConfig": "macelerate.train.config",
    "TrainReport": "macelerate.train.config",
    "LossWeights": "macelerate.train.losses",
    "LabelledData": "macelerate.train.data",
    "ExponentialMovingAverage": "macelerate.train.ema",
    "label_structures": "macelerate.train.teacher",
    "sample_structures": "macelerate.train.teacher",
    "write_structures": "macelerate.train.teacher",
    "TrainConfigError": "macelerate.train.errors",
    "TrainingDivergedError": "macelerate.train.errors",
    "TrainStateError": "macelerate.train.state",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'macelerate.train' has no attribute {name!r}")
