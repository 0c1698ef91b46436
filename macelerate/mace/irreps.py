"""e3nn vocabulary shared by the layout records: irreps entries and weighted paths.

* **irreps**: a sequence of entries ``(mul, l, parity)`` (e3nn's ``mul x l p``) in e3nn's
  ``mul_ir`` layout: the features of entry ``i`` occupy ``mul * (2l + 1)`` consecutive components,
  channel-major (``[..., mul, 2l + 1]`` flattened).
* **path**: one weighted instruction of an e3nn ``Linear`` or ``TensorProduct``. Its weights are a
  ``shape`` block of the module's flat weight vector (blocks concatenated in instruction order);
  ``axes[a]`` names the operand (0: input 1, 1: input 2 / the output of a Linear, 2: the output of
  a tensor product) whose channels weight axis ``a`` runs over; ``weight`` is e3nn's normalisation
  constant ``path_weight`` (the module multiplies the path's output by it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Irrep = tuple[int, int, int]
"""One irreps entry: (multiplicity, l, parity +1/-1)."""

TP_MODE_AXES = {"uvw": (0, 1, 2), "uvu": (0, 1), "uvv": (0, 1), "uuw": (0, 2), "uuu": (0,)}
"""Operand of each weight axis per e3nn connection mode (u: input 1, v: input 2, w: output)."""


@dataclass(frozen=True)
class Path:
    """One weighted e3nn instruction: entries per operand, weight-block axes and shape, norm."""

    entries: tuple[int, ...]
    axes: tuple[int, ...]
    shape: tuple[int, ...]
    weight: float

    @property
    def numel(self) -> int:
        """Number of weights of this path."""
        return int(np.prod(self.shape)) if self.shape else 1


def irreps_entries(irreps: Any) -> tuple[Irrep, ...]:
    """``(mul, l, parity)`` entries of an e3nn ``Irreps`` (or anything ``o3.Irreps`` accepts)."""
    if isinstance(irreps, tuple) and all(isinstance(e, tuple) and len(e) == 3 for e in irreps):
        return irreps
    from e3nn import o3

    return tuple((mul, ir.l, ir.p) for mul, ir in o3.Irreps(irreps))


def irreps_string(irreps: Sequence[Irrep]) -> str:
    """e3nn string of ``(mul, l, parity)`` entries, e.g. ``"8x0e+8x1o"``."""
    return "+".join(f"{mul}x{ell}{'e' if p > 0 else 'o'}" for mul, ell, p in irreps)


def paths_from_e3nn(module: torch.nn.Module) -> tuple[Path, ...]:
    """The weighted paths of an e3nn ``o3.Linear`` (operands in, out) or ``TensorProduct``.

    Raises:
        ValueError: a tensor-product connection mode outside :data:`TP_MODE_AXES`.
    """
    paths = []
    instructions: Any = module.instructions
    for ins in instructions:
        if hasattr(ins, "i_in"):  # o3.Linear: path_shape (mul_in, mul_out)
            paths.append(
                Path((ins.i_in, ins.i_out), (0, 1), tuple(ins.path_shape), ins.path_weight)
            )
        elif ins.has_weight:
            if ins.connection_mode not in TP_MODE_AXES:
                raise ValueError(f"cannot slice connection mode {ins.connection_mode!r}")
            entries = (ins.i_in1, ins.i_in2, ins.i_out)
            axes = TP_MODE_AXES[ins.connection_mode]
            paths.append(Path(entries, axes, tuple(ins.path_shape), ins.path_weight))
    return tuple(paths)
