"""Floating-point dtypes by name: the one table and the two conversions macelerate uses.

Configurations, checkpoints and reports store dtypes as strings (``"float64"``); torch works with
``torch.dtype``. Models store and compute in :data:`MODEL_DTYPES`; precision policies may also
name the half-precision dtypes of :data:`DTYPES`.
"""

from __future__ import annotations

from collections.abc import Collection

import torch

DTYPES: dict[str, torch.dtype] = {
    "float64": torch.float64,
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""Every dtype name macelerate accepts, to its torch dtype."""

MODEL_DTYPES = ("float64", "float32")
"""Dtypes a whole model (parameters, graphs, training) may have; half precision only per block."""


def parse_dtype(name: str, *, allowed: Collection[str] = MODEL_DTYPES) -> torch.dtype:
    """The torch dtype named ``name`` (``"float64"`` -> ``torch.float64``).

    Raises:
        ValueError: ``name`` is not one of ``allowed``.
    """
    if name not in allowed or name not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(allowed)}, got {name!r}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """The name of a torch dtype as configurations store it (``torch.float32`` -> ``"float32"``)."""
    return str(dtype).removeprefix("torch.")
