"""The eager model an export starts from: a file, a module or a Potential -> an owned copy.

Exports write models that other engines run, so they start from mace-torch's own modules: a
:class:`~macelerate.models.potential.Potential` runs macelerate's exact kernels (``fuse``), which
are rebuilt back into mace-torch's layout here; approximate runtime transforms (tabulated radial
functions, precision policies) are refused, since no other engine would reproduce them.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch

from macelerate._mace import model_construction
from macelerate.export.report import ExportError
from macelerate.mace.contract import MODEL_CLASSES

EXACT_RUNTIME_TRANSFORMS = ("fuse",)
"""Potential transforms an export undoes (results equal mace-torch's to rounding)."""


def read_source(model: str | Path | torch.nn.Module) -> torch.nn.Module:
    """A copy of the model to export, in mace-torch's layout (the caller owns it).

    Args:
        model: a model file (a mace-torch ``.model`` pickle, read through macelerate's
            allow-listed loader so no code from it runs, or a macelerate checkpoint), a mace-torch
            ``MACE``/``ScaleShiftMACE``, a :class:`~macelerate.models.student.Student`, or a
            :class:`~macelerate.models.potential.Potential` (never changed).

    Returns:
        A ``ScaleShiftMACE``/``MACE`` or a ``Student``, in eval mode, with no macelerate kernels.

    Raises:
        ModelFileError: the file cannot be read (see :func:`macelerate.models.read_model_file`).
        ExportError: a TorchScript export, another architecture, or a Potential with an
            approximate runtime transform.
    """
    from macelerate.models.loading import read_model_file
    from macelerate.models.potential import Potential

    if isinstance(model, (str, Path)):
        module, _ = read_model_file(model)
    elif isinstance(model, Potential):
        _check_exact(model)
        module = model.model
    elif isinstance(model, torch.nn.Module):
        module = model
    else:
        raise TypeError(f"export a model file, module or Potential, not a {type(model).__name__}")
    if isinstance(module, torch.jit.ScriptModule):
        raise ExportError(
            "a TorchScript model cannot be turned back into mace-torch modules; export the "
            ".model file or macelerate checkpoint it was made from"
        )
    return _mace_layout_copy(module)


def _check_exact(potential: Any) -> None:
    """Refuse Potentials whose runtime transforms change results beyond rounding."""
    names = [r.name for r in potential.transforms if r.name not in EXACT_RUNTIME_TRANSFORMS]
    if potential.precision is not None or names:
        what = names or ["precision"]
        raise ExportError(
            f"this Potential runs {', '.join(what)}, which other engines do not reproduce; export "
            "the model file (or a Potential loaded without radial='tabulated' and precision=...)"
        )


def _runs_macelerate_kernels(module: torch.nn.Module) -> bool:
    return any(type(m).__module__.startswith("macelerate.") for m in module.modules())


def _plain_mace_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A mace-torch copy of a ``MACE``/``ScaleShiftMACE``, rebuilt if it runs macelerate kernels."""
    from macelerate.train.export import load_trained_weights

    if not _runs_macelerate_kernels(module):
        with model_construction():
            return copy.deepcopy(module).eval()
    from macelerate.mace.config import build_mace_model, describe_mace_model

    return load_trained_weights(build_mace_model(describe_mace_model(module)), module)


def _mace_layout_copy(module: torch.nn.Module) -> torch.nn.Module:
    from macelerate.models.student import Student, student_is_hybrid

    if type(module).__name__ in MODEL_CLASSES:
        return _plain_mace_copy(module)
    if isinstance(module, Student):
        if student_is_hybrid(module) and _runs_macelerate_kernels(module):
            from macelerate.train.export import load_trained_weights

            fresh = Student(module.config, backbone_config=module.backbone_description)
            return load_trained_weights(fresh.to(module.dtype), module)
        with model_construction():
            student = copy.deepcopy(module)
        if not student.config.smooth_cap:  # a smooth cap is refused later, with its reason
            student.backbone = _plain_mace_copy(student.backbone)
        return student.eval()
    raise ExportError(
        f"cannot export a {type(module).__name__}: exports hold mace-torch {MODEL_CLASSES} models "
        "and macelerate students"
    )
