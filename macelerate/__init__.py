"""macelerate: make MACE interatomic potentials fast, with every lever's accuracy cost reported.

Public API (heavy dependencies are imported on first use)::

    import macelerate
    potential = macelerate.load("model.model", dtype="float64")
    graph = macelerate.build_graph(atoms, cutoff=potential.r_max, z_table=potential.atomic_numbers)
    atoms.calc = macelerate.Calculator(potential)
    fast, report = macelerate.apply_precision(potential, "bf16-linear", probe=[atoms])
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from macelerate._version import __version__

_EXPORTS = {
    "load": "macelerate.models.loading",
    "Potential": "macelerate.models.potential",
    "Prediction": "macelerate.models.potential",
    "build_graph": "macelerate.graph.batch",
    "Calculator": "macelerate.calculator",
    "convert": "macelerate.models.convert",
    "describe": "macelerate.models.info",
    "PrecisionPolicy": "macelerate.precision.policy",
    "apply_precision": "macelerate.precision.transform",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'macelerate' has no attribute {name!r}")
