"""Progressive correlation order: train a student at body order ν = 1, then grow it to the target.

mace-torch's symmetric contraction sums one polynomial per correlation order ν = 1..C, each
with its own weights (``weights_max`` for ν = C, ``weights[C - 1 - ν]`` below it) on U matrices
that depend on ν alone. Growing a contraction from order c to C therefore keeps every trained
order's weights and adds the new orders with zero weights: the grown student computes exactly
the function of the smaller one (:func:`grow_correlation`), and training continues from there.
Early stages are cheaper per step, because the higher-order contractions are not there yet.

Resumable like gradual pruning: with ``checkpoint_path`` P, stage ``i`` keeps its training
state in ``P.stage<i>``; a resumed run retrains nothing that finished.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from ase import Atoms

from macelerate._dtypes import dtype_name
from macelerate.data.labels import LabelKeys
from macelerate.models.student import Student, StudentConfig, build_student
from macelerate.train.config import TrainConfig
from macelerate.train.errors import TrainConfigError
from macelerate.train.gradual_prune import stage_config
from macelerate.train.loop import TrainReport, train


@dataclass(frozen=True)
class CorrelationStage:
    """One stage: train the student at body order ``correlation`` for ``steps`` steps."""

    correlation: int
    steps: int


_ORDER_WEIGHT = re.compile(
    r"^(.*\.symmetric_contractions\.contractions\.\d+)\.weights(?:_max|\.(\d+))$"
)
"""``(contraction prefix, None for weights_max or the index j of weights.j)`` of a state key."""


def _order_weight_name(order: int, correlation: int) -> str:
    """Name of order ``order``'s weights in a contraction of correlation ``correlation``."""
    return "weights_max" if order == correlation else f"weights.{correlation - 1 - order}"


def grow_correlation(student: Student, correlation: int) -> tuple[Student, dict[str, Any]]:
    """A copy of ``student`` with body order ``correlation``, computing the same function.

    Every mace layer's contraction weights for orders 1..c are copied to the same orders of the
    new contraction; orders c+1..``correlation`` start at zero. ``student`` is not changed.

    Returns:
        The grown student and a report: ``correlation_before``/``_after``, ``parameters_before``
        /``_after``, ``new_weights`` (zero-initialised weights added).

    Raises:
        TrainConfigError: ``correlation`` is not above the student's, or a layer is not MACE.
    """
    before = student.config.correlation
    if correlation <= before:
        raise TrainConfigError(
            f"growing the correlation order needs a higher order than the student's {before}, "
            f"got {correlation}"
        )
    if any(kind != "mace" for kind in student.config.layer_kinds):
        raise TrainConfigError("only students whose layers are all mace can grow their order")
    config = replace(student.config, correlation=int(correlation), dtype=dtype_name(student.dtype))
    grown = build_student(config).to(student.dtype)
    source_state = student.state_dict()
    state = grown.state_dict()
    new_weights = 0
    for name, tensor in state.items():
        match = _ORDER_WEIGHT.match(name)
        if match is None:  # not an order's weights: the same in both (U matrices are per order)
            if name in source_state and source_state[name].shape == tensor.shape:
                state[name] = source_state[name].clone()
            continue
        prefix, below_max = match.group(1), match.group(2)
        order = correlation if below_max is None else correlation - 1 - int(below_max)
        if order > before:
            state[name] = torch.zeros_like(tensor)
            new_weights += tensor.numel()
        else:
            state[name] = source_state[f"{prefix}.{_order_weight_name(order, before)}"].clone()
    grown.load_state_dict(state)
    report = {
        "correlation_before": before,
        "correlation_after": int(correlation),
        "parameters_before": sum(p.numel() for p in student.parameters()),
        "parameters_after": sum(p.numel() for p in grown.parameters()),
        "new_weights": new_weights,
    }
    return grown.eval(), report


def correlation_schedule(correlation: int, steps: Sequence[int]) -> list[CorrelationStage]:
    """Stages ν = 1..``correlation`` with the given step counts (one per order)."""
    if len(steps) != correlation or any(s < 1 for s in steps):
        raise TrainConfigError(
            f"a progressive correlation schedule needs one step count >= 1 per order 1.."
            f"{correlation}, got {list(steps)}"
        )
    return [CorrelationStage(order, int(s)) for order, s in enumerate(steps, start=1)]


def progressive_distill(
    teacher: Any,
    structures: Sequence[Atoms],
    *,
    student: StudentConfig,
    stages: Sequence[CorrelationStage],
    config: TrainConfig,
    val_structures: Sequence[Atoms] | None = None,
    keys: LabelKeys | None = None,
    seed: int = 0,
) -> tuple[Student, TrainReport, dict[str, Any]]:
    """Distil ``student`` stage by stage, growing its correlation order between stages.

    Args:
        teacher: the Potential to distil.
        structures, val_structures, keys: as for :func:`macelerate.train.distill.distill`.
        student: the final architecture; its ``correlation`` must be the last stage's.
        stages: orders strictly increasing (see :func:`correlation_schedule`).
        config: training settings shared by the stages (``max_steps``/``epochs`` set per stage;
            ``checkpoint_path`` P becomes ``P.stage<i>``).
        seed: seed of the first stage's initial weights.

    Returns:
        The final student, the last stage's training report, and a summary: per stage
        ``correlation``, ``steps``, ``parameters``, ``trained_steps``, ``final_validation``,
        ``seconds``, ``seconds_per_step``; and the total ``seconds``.
    """
    orders = [stage.correlation for stage in stages]
    if not stages or orders != sorted(set(orders)) or orders[-1] != student.correlation:
        raise TrainConfigError(
            f"progressive correlation needs orders that rise at every stage and end at the "
            f"student's correlation {student.correlation}; got {orders}"
        )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        current = build_student(replace(student, correlation=orders[0]))
    records: list[dict[str, Any]] = []
    seconds = 0.0
    report: TrainReport | None = None
    for index, stage in enumerate(stages, start=1):
        if stage.correlation > current.config.correlation:
            current, _ = grow_correlation(current, stage.correlation)
        settings = stage_config(config, index, stage.steps, n_structures=len(structures),
                                has_val=val_structures is not None)  # fmt: skip
        trained, report = train(
            current, structures, config=settings, val_structures=val_structures, keys=keys,
            teacher=teacher,
        )  # fmt: skip
        assert isinstance(trained, Student)  # train returns a copy of its model's class
        current = trained
        seconds += report.seconds
        records.append(
            {
                "correlation": stage.correlation,
                "steps": stage.steps,
                "parameters": sum(p.numel() for p in current.parameters()),
                "trained_steps": report.steps,
                "final_validation": report.final_validation,
                "seconds": report.seconds,
                "seconds_per_step": report.seconds / max(report.steps, 1),
                "resumed_from_step": report.resumed_from_step,
            }
        )
    assert report is not None  # at least one stage ran
    summary = {"stages": records, "seconds": seconds}
    return current, report, summary
