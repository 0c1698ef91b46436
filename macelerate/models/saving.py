"""``save_model``: one way to write any model macelerate makes, as a weights-only checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from macelerate.records import TransformRecord


def record_dicts(records: Sequence[TransformRecord | dict[str, Any]]) -> list[dict[str, Any]]:
    """Records in the checkpoint form; older flat records (``{"transform": ...}``) are read in."""
    return [
        (
            record if isinstance(record, TransformRecord) else TransformRecord.from_dict(record)
        ).to_dict()
        for record in records
    ]


def save_model(
    path: str | Path,
    model: torch.nn.Module,
    *,
    provenance: dict[str, Any],
    transforms: Sequence[TransformRecord | dict[str, Any]] = (),
) -> Path:
    """Write ``model`` (a mace-torch ``MACE``/``ScaleShiftMACE`` or a
    :class:`~macelerate.models.student.Student`) atomically as a macelerate checkpoint.

    Args:
        path: where to write.
        model: the model; its constructor arguments are described as plain data and its state
            dict saved (nothing pickled).
        provenance: :func:`~macelerate.models.checkpoint.make_provenance` output.
        transforms: what the model went through, oldest first.

    Raises:
        ModelFileError: a model that cannot be described (TorchScript, another architecture).
    """
    from macelerate.models.student import Student, save_student

    records = record_dicts(transforms)
    if isinstance(model, Student):
        return save_student(path, model, provenance, transforms_applied=records)
    from macelerate.mace.config import describe_mace_model
    from macelerate.models.checkpoint import save_checkpoint

    return save_checkpoint(
        path, model_config=describe_mace_model(model), state_dict=model.state_dict(),
        provenance=provenance, transforms_applied=records,
    )  # fmt: skip
