"""Guards against non-finite training: bad batches are skipped, bad weights are never written.

A batch whose loss or gradient holds NaN or inf is skipped (no optimiser step, no EMA update) and
counted; after ``TrainConfig.max_bad_batches`` of them the run stops with
:class:`~macelerate.train.errors.TrainingDivergedError`. Every write of a training state and every
returned model passes :func:`require_finite` first, so the last good file on disk survives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from macelerate.train.errors import TrainingDivergedError

ADVICE = (
    "lower the learning rate (--lr), check the data for extreme labels or overlapping atoms, or "
    "raise --max-bad-batches to tolerate rare bad batches"
)


def poison_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Set every gradient to NaN (a non-finite local loss must make every rank skip the step)."""
    for parameter in parameters:
        parameter.grad = torch.full_like(parameter, float("nan"))


def gradient_norm(parameters: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """The total 2-norm of the gradients (scalar; NaN or inf if any gradient is)."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


def nonfinite_entries(tree: Any, prefix: str = "") -> list[str]:
    """Names of the floating tensors in a nested dict/list of tensors that hold NaN or inf."""
    if isinstance(tree, torch.Tensor):
        bad = tree.is_floating_point() and not bool(torch.isfinite(tree).all())
        return [prefix or "<tensor>"] if bad else []
    if isinstance(tree, Mapping):
        items: Iterable[tuple[Any, Any]] = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return []
    names: list[str] = []
    for key, value in items:
        names += nonfinite_entries(value, f"{prefix}.{key}" if prefix else str(key))
    return names


def require_finite(tree: Any, *, what: str, kept: str) -> None:
    """Raise :class:`TrainingDivergedError` if ``tree`` (a state dict, ...) holds NaN or inf.

    Args:
        tree: tensors to check (nested dicts and lists allowed).
        what: what was about to be written or returned (for the message).
        kept: what survives, e.g. ``"the previous state.pt is unchanged"``.
    """
    bad = nonfinite_entries(tree)
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise TrainingDivergedError(
            f"training diverged: {what} holds NaN/inf values ({shown}); nothing was written "
            f"and {kept}. To fix: {ADVICE}"
        )


def too_many_bad_batches(
    *, count: int, step: int, epoch: int, loss: float, lr: float, state_path: str | None
) -> TrainingDivergedError:
    """The error that stops a run after ``count`` skipped batches (the last at ``step``)."""
    kept = f"the last good training state stays in {state_path}" if state_path else (
        "nothing was written")  # fmt: skip
    return TrainingDivergedError(
        f"training stopped: {count} batches had a NaN/inf loss or gradient (the last at step "
        f"{step}, epoch {epoch}, loss {loss:.4g}, lr {lr:.3g}); {kept}. To fix: {ADVICE}"
    )
