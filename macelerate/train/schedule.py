"""The per-step cosine learning-rate schedule, as a pure function of the step count.

The learning rate at step ``s`` (the rate the next optimiser step uses) is::

    lr(s) = minimum + (start - minimum) * (1 + cos(pi * (s - anchor) / (total - anchor))) / 2

clamped to ``minimum`` from ``total`` on, with ``anchor = 0`` and ``start = peak`` for a new run.
Unlike ``torch.optim.lr_scheduler.CosineAnnealingLR`` (periodic past ``T_max``), the rate never
rises again. When a resumed run changes the total (``--epochs``), :meth:`CosineSchedule.extended`
re-anchors at the current step and rate: the schedule continues from where it was, without a
jump, and decays to ``minimum`` at the new last step. Resuming with the same total keeps the
schedule, so a killed and resumed run follows the uninterrupted one exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class CosineSchedule:
    """Cosine decay from ``start`` (``peak`` unless re-anchored) to ``minimum``.

    Attributes:
        peak: learning rate of step 0.
        minimum: learning rate from ``total_steps`` on.
        total_steps: the step at which ``minimum`` is reached.
        anchor_step: the step the current cosine starts from (0, or where a resume changed the
            total).
        anchor_lr: the rate at ``anchor_step`` (``None``: ``peak``).
    """

    peak: float
    minimum: float
    total_steps: int
    anchor_step: int = 0
    anchor_lr: float | None = None

    def lr(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (0-based)."""
        start = self.peak if self.anchor_lr is None else self.anchor_lr
        span = max(self.total_steps - self.anchor_step, 1)
        progress = min(max(step - self.anchor_step, 0) / span, 1.0)
        return self.minimum + (start - self.minimum) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def extended(self, *, total_steps: int, step: int) -> CosineSchedule:
        """The schedule for a new total, continuing from the rate at ``step`` (self if same)."""
        if total_steps == self.total_steps:
            return self
        return CosineSchedule(
            peak=self.peak, minimum=self.minimum, total_steps=total_steps, anchor_step=step,
            anchor_lr=self.lr(step),
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Plain data for a training-state file."""
        return {"kind": "cosine", **asdict(self)}

    @classmethod
    def from_state(cls, state: dict[str, Any], *, peak: float, minimum: float) -> CosineSchedule:
        """Inverse of :meth:`state_dict`; also reads ``CosineAnnealingLR`` states (``T_max``)
        of training-state files written before this schedule existed."""
        if state.get("kind") != "cosine" and "T_max" in state:
            return cls(peak=peak, minimum=minimum, total_steps=int(state["T_max"]))
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})
