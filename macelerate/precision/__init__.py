"""Precision policies: low precision where it is safe, float32/float64 islands where it is not."""

from macelerate.precision.policy import (
    PRESETS,
    PrecisionError,
    PrecisionPolicy,
    resolve_policy,
)

__all__ = [
    "PRESETS",
    "PrecisionError",
    "PrecisionPolicy",
    "resolve_policy",
]
