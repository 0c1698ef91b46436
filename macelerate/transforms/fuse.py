"""``fuse(potential) -> (new potential, RuntimeReport)``: install the exact runtime kernels.

Fused convolution, table-based symmetric contraction and dead-block skipping
(:mod:`macelerate.runtime.accelerate`). Results equal the source potential's to floating-point
rounding. The source is never changed: the kernels go into a copy of its model.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import torch

from macelerate.records import TransformRecord
from macelerate.runtime.accelerate import RuntimeOptions, RuntimeReport, accelerate_in_place

if TYPE_CHECKING:
    from macelerate.models.potential import Potential


def fuse(
    potential: Potential, options: RuntimeOptions | None = None
) -> tuple[Potential, RuntimeReport]:
    """A new Potential whose model runs macelerate's exact kernels (``potential`` is unchanged).

    Args:
        potential: the source.
        options: which kernels (default: all).

    Raises:
        ValueError: ``potential`` already runs a precision policy (fuse first, then apply the
            policy, so that the policy's islands wrap the fused blocks).
    """
    _check_fusable(potential)
    return _fuse_model(potential, potential.copy_model(), options)


def fuse_owned(
    potential: Potential, options: RuntimeOptions | None = None
) -> tuple[Potential, RuntimeReport]:
    """:func:`fuse` without the copy: the kernels go into ``potential``'s own model.

    For callers that made ``potential`` themselves and drop it (:func:`macelerate.load`);
    ``potential`` must not be used afterwards.
    """
    _check_fusable(potential)
    return _fuse_model(potential, potential.model, options)


def _check_fusable(potential: Potential) -> None:
    if potential.precision is not None:
        raise ValueError(
            "fuse before applying a precision policy: fuse(potential) then "
            "apply_precision(fused, policy)"
        )


def _fuse_model(
    potential: Potential, model: torch.nn.Module, options: RuntimeOptions | None
) -> tuple[Potential, RuntimeReport]:
    options = options or RuntimeOptions()
    backbone = getattr(model, "backbone", model)  # a Student's mace model, or the model
    report = accelerate_in_place(backbone, options)
    record = TransformRecord("fuse", False, asdict(options), asdict(report))
    return potential.replace(model, record=record), report
