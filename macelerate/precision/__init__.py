"""Precision policies: low precision where it is safe, float32/float64 islands where it is not."""

from macelerate.precision.policy import (
    PRESETS,
    PrecisionError,
    PrecisionPolicy,
    resolve_policy,
)
from macelerate.precision.transform import PrecisionReport, apply_precision

__all__ = [
    "PRESETS",
    "PrecisionError",
    "PrecisionPolicy",
    "PrecisionReport",
    "apply_precision",
    "resolve_policy",
]
