"""Loading, describing, converting and running mace-torch models.

Public names (imported on first use; the package imports nothing heavy)::

    from macelerate.models import load, Potential, Student, StudentConfig
    potential = load("model.model")

``convert`` (a mace-torch file -> a weights-only checkpoint) is
:func:`macelerate.models.convert.convert`, also ``macelerate.convert``: it is not re-exported here
because ``macelerate.models.convert`` is its module. How mace-torch models are described and
rebuilt from plain data is :mod:`macelerate.mace.config`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.models.checkpoint import make_provenance, save_checkpoint
    from macelerate.models.info import describe
    from macelerate.models.loading import load, read_model_file
    from macelerate.models.potential import ModelSource, Potential, Prediction
    from macelerate.models.saving import save_model
    from macelerate.models.student import (
        Student,
        StudentConfig,
        StudentError,
        build_student,
        export_backbone,
        load_student,
        save_student,
    )

_EXPORTS = {
    "load": "macelerate.models.loading",
    "read_model_file": "macelerate.models.loading",
    "Potential": "macelerate.models.potential",
    "Prediction": "macelerate.models.potential",
    "ModelSource": "macelerate.models.potential",
    "describe": "macelerate.models.info",
    "make_provenance": "macelerate.models.checkpoint",
    "save_checkpoint": "macelerate.models.checkpoint",
    "save_model": "macelerate.models.saving",
    "Student": "macelerate.models.student",
    "StudentConfig": "macelerate.models.student",
    "StudentError": "macelerate.models.student",
    "build_student": "macelerate.models.student",
    "export_backbone": "macelerate.models.student",
    "load_student": "macelerate.models.student",
    "save_student": "macelerate.models.student",
}

__all__ = [
    "ModelSource",
    "Potential",
    "Prediction",
    "Student",
    "StudentConfig",
    "StudentError",
    "build_student",
    "describe",
    "export_backbone",
    "load",
    "load_student",
    "make_provenance",
    "read_model_file",
    "save_checkpoint",
    "save_model",
    "save_student",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
