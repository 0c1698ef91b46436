"""Precision policies: low precision where it is safe, float32/float64 islands where it is not.

The policy is data (:class:`PrecisionPolicy`, :data:`PRESETS`); applying one to a Potential is
:func:`macelerate.transforms.apply_precision`. Names are imported eagerly (the package needs only
torch).
"""

from __future__ import annotations

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
