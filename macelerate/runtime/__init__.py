"""macelerate's kernels: what runs inside a model after :func:`macelerate.transforms.fuse`.

* :mod:`~macelerate.runtime.fused_conv`: edge tensor product + neighbour sum in one operation;
* :mod:`~macelerate.runtime.neighbour_layout`: the receiver-major slot layout it sums over;
* :mod:`~macelerate.runtime.interaction`: interaction blocks with their per-edge work in that
  layout;
* :mod:`~macelerate.runtime.symmetric_contraction`: the product basis as per-element tables;
* :mod:`~macelerate.runtime.dead_blocks`: work that only meets exactly-zero weights;
* :mod:`~macelerate.runtime.tabulated_radial`: radial MLPs as tables of the edge length (approx.);
* :mod:`~macelerate.runtime.accelerate`: installs the exact ones into a model;
* :mod:`~macelerate.runtime.allocator`: the process-wide glibc malloc setting.

Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.runtime.accelerate import RuntimeOptions, RuntimeReport, accelerate_in_place
    from macelerate.runtime.fused_conv import FusedEdgeTensorProduct
    from macelerate.runtime.symmetric_contraction import FastSymmetricContraction
    from macelerate.runtime.tabulated_radial import TabulatedRadialMLP

_EXPORTS = {
    "RuntimeOptions": "macelerate.runtime.accelerate",
    "RuntimeReport": "macelerate.runtime.accelerate",
    "accelerate_in_place": "macelerate.runtime.accelerate",
    "FusedEdgeTensorProduct": "macelerate.runtime.fused_conv",
    "FastSymmetricContraction": "macelerate.runtime.symmetric_contraction",
    "TabulatedRadialMLP": "macelerate.runtime.tabulated_radial",
}

__all__ = [
    "FastSymmetricContraction",
    "FusedEdgeTensorProduct",
    "RuntimeOptions",
    "RuntimeReport",
    "TabulatedRadialMLP",
    "accelerate_in_place",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
