"""Transforms: ``potential -> (new potential, report)``, never in place.

Runtime transforms, applied again at every load (:func:`macelerate.load` composes them in this
order):

* :func:`fuse`: macelerate's exact kernels (fused convolution, table-based symmetric contraction,
  dead-block skipping); results equal mace-torch's to floating-point rounding.
* :func:`tabulate_radial`: radial MLPs replaced by cubic Hermite tables of the edge length; an
  approximate lever whose measured force error is reported.
* :func:`quantize_readouts`: readout linears with int8 weights; an approximate lever whose
  measured error is reported.
* :func:`apply_precision`: a per-block precision policy.

Persistent transforms (pruning, training, distillation) live in :mod:`macelerate.compress` and
:mod:`macelerate.train`; every transform is recorded as a :class:`TransformRecord`.
"""

from macelerate.records import TransformRecord
from macelerate.transforms.fuse import fuse
from macelerate.transforms.int8_readouts import Int8ReadoutReport, quantize_readouts
from macelerate.transforms.precision import PrecisionReport, apply_precision
from macelerate.transforms.tabulate import TabulationReport, tabulate_radial

__all__ = [
    "Int8ReadoutReport",
    "PrecisionReport",
    "TabulationReport",
    "TransformRecord",
    "apply_precision",
    "fuse",
    "quantize_readouts",
    "tabulate_radial",
]
