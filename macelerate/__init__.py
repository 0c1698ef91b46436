"""macelerate: make MACE interatomic potentials fast, with every lever's accuracy cost reported.

Public API (heavy dependencies are imported on first use)::

    import macelerate
    potential = macelerate.load("model.model", dtype="float64")
    graph = macelerate.build_graph(atoms, cutoff=potential.r_max, z_table=potential.atomic_numbers)
    atoms.calc = macelerate.Calculator(potential)
    fast, report = macelerate.apply_precision(potential, "bf16-linear", probe=[atoms])

Names:
    load: a mace-torch ``.model`` file, macelerate checkpoint or module -> :class:`Potential`.
    Potential: a mace-torch model behind an exact energy / forces / stress call.
    Prediction: numpy outputs of :meth:`Potential.predict`.
    build_graph: ASE structures -> the graph dictionary a model reads.
    Calculator: an ASE calculator over a :class:`Potential`.
    convert: a mace-torch model file -> a weights-only macelerate checkpoint, verified.
    describe: architecture facts of a loaded model, as plain data.
    PrecisionPolicy: per-block storage and compute dtypes, as a frozen dataclass.
    apply_precision: a :class:`Potential` under a precision policy, with its accuracy report.
    fuse: a :class:`Potential` running macelerate's exact kernels, with what they skip.
    tabulate_radial: radial MLPs as cubic tables of the edge length, with the measured error.
    TransformRecord: one transform a model went through.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports
from macelerate._version import __version__

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time the names load lazily
    from macelerate.calculator import Calculator
    from macelerate.graph.batch import build_graph
    from macelerate.models.convert import convert
    from macelerate.models.info import describe
    from macelerate.models.loading import load
    from macelerate.models.potential import Potential, Prediction
    from macelerate.precision.policy import PrecisionPolicy
    from macelerate.transforms import TransformRecord, apply_precision, fuse, tabulate_radial

_EXPORTS = {
    "load": "macelerate.models.loading",
    "Potential": "macelerate.models.potential",
    "Prediction": "macelerate.models.potential",
    "build_graph": "macelerate.graph.batch",
    "Calculator": "macelerate.calculator",
    "convert": "macelerate.models.convert",
    "describe": "macelerate.models.info",
    "PrecisionPolicy": "macelerate.precision.policy",
    "apply_precision": "macelerate.transforms",
    "fuse": "macelerate.transforms",
    "tabulate_radial": "macelerate.transforms",
    "TransformRecord": "macelerate.transforms",
}

__all__ = [
    "Calculator",
    "Potential",
    "PrecisionPolicy",
    "Prediction",
    "TransformRecord",
    "__version__",
    "apply_precision",
    "build_graph",
    "convert",
    "describe",
    "fuse",
    "load",
    "tabulate_radial",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
