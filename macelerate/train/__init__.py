"""Training: plain training, recovery fine-tuning after pruning, and distillation from a teacher.

::

    from macelerate.train import TrainConfig, LossWeights, train, label_structures
    trained, report = train(model, structures, config=TrainConfig(epochs=20))
    labelled = label_structures(teacher, structures, hessian_rows=2)

Names are imported from the submodules on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.train.config import TrainConfig, TrainReport
    from macelerate.train.data import LabelledData
    from macelerate.train.ema import ExponentialMovingAverage
    from macelerate.train.errors import TrainConfigError, TrainingDivergedError
    from macelerate.train.loop import train
    from macelerate.train.losses import LossWeights
    from macelerate.train.state import TrainStateError
    from macelerate.train.teacher import label_structures, sample_structures, write_structures

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

__all__ = [
    "ExponentialMovingAverage",
    "LabelledData",
    "LossWeights",
    "TrainConfig",
    "TrainConfigError",
    "TrainReport",
    "TrainStateError",
    "TrainingDivergedError",
    "label_structures",
    "sample_structures",
    "train",
    "write_structures",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
