"""Errors of training runs: bad settings, and runs that diverged (non-finite loss or weights)."""

from __future__ import annotations

from macelerate.errors import MacelerateError


class TrainConfigError(MacelerateError, ValueError):
    """Training settings that cannot work (``epochs=0``, ``val_fraction=1``, ...)."""


class TrainingDivergedError(MacelerateError, RuntimeError):
    """The loss, gradients or weights of a run became NaN or infinite; nothing bad was written."""
