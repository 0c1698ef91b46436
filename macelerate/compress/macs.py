"""Dense multiply-add estimates of a mace-torch MACE, from its layout records."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from macelerate.compress.source import plain_mace_model
from macelerate.mace.irreps import Path
from macelerate.mace.layout import ContractionWeight, DenseWeight, Record, read_layout


def path_macs(path: Path, dims: Sequence[int], *, linear: bool) -> int:
    """Dense multiply-add estimate of one path per evaluation.

    Args:
        dims: irrep dimensions (2l+1) of the path's operands (in, out for a Linear; in1, in2, out
            for a tensor product).
        linear: True for an ``o3.Linear`` path (a [mul_in, mul_out] matmul per component).

    Returns:
        Linear: ``mul_in * mul_out * d``. Tensor product: the Clebsch-Gordan contraction
        ``pairs * d1 * d2 * d3`` plus the weighting ``numel * d3``, pairs being the number of
        (input-1, input-2) channel pairs the path couples.
    """
    if linear:
        return path.numel * dims[-1]
    pairs = int(np.prod([n for n, a in zip(path.shape, path.axes) if a in (0, 1)]))
    return pairs * dims[0] * dims[1] * dims[2] + path.numel * dims[2]


def contraction_macs(*, channels: int, dim_out: int, num_ell: int, params: dict[int, int]) -> int:
    """Dense multiply-add estimate of one mace ``Contraction`` (one output irrep) per atom.

    Args:
        params: number of basis weights per correlation order nu.

    Returns:
        ``sum_nu channels * dim_out * num_ell**nu * (P_nu + 1)``: weighting U by the per-element
        weights, then contracting with the features.
    """
    return sum(channels * dim_out * num_ell**nu * (p + 1) for nu, p in params.items())


def mlp_macs(widths: Sequence[int]) -> int:
    """Multiply-adds of a bias-free MLP with layer widths ``widths``."""
    return int(sum(a * b for a, b in zip(widths, widths[1:])))


def weight_macs(record: Record) -> int:
    """Multiply-adds of the computation ``record`` weights, per edge or per atom.

    e3nn linears and tensor products: :func:`path_macs` over their paths (plus the radial MLP's
    last layer for the edge tensor product); radial-MLP hidden layers: :func:`mlp_macs`;
    contraction weights: the ``nu`` term of :func:`contraction_macs`.
    """
    if isinstance(record, DenseWeight):
        return mlp_macs(record.shape)
    if isinstance(record, ContractionWeight):
        elements, params, channels = record.shape
        num_ell = sum(2 * ell + 1 for _, ell, _ in record.operand.irreps)
        dim_out = 2 * record.irrep_out[0] + 1
        return contraction_macs(
            channels=channels, dim_out=dim_out, num_ell=num_ell, params={record.nu: params}
        )
    linear = len(record.operands) == 2
    total = 0
    for path in record.paths:
        dims = [2 * record.operands[k].irreps[e][1] + 1 for k, e in enumerate(path.entries)]
        total += path_macs(path, dims, linear=linear)
    weight_numel = sum(p.numel for p in record.paths)
    return total + (mlp_macs([record.rows, weight_numel]) if record.rows > 1 else 0)


def estimate_macs(model: Any) -> tuple[int, int]:
    """Dense multiply-add estimate ``(per edge, per atom)`` of one energy evaluation of a MACE.

    Per edge: the radial MLPs and edge tensor products (Clebsch-Gordan contraction plus
    weighting, per path). Per atom: embedding, ``linear_up``, ``linear``, skip tensor product
    (node features x elements -> next node features in residual blocks; message x elements ->
    message in ``RealAgnosticInteractionBlock``), symmetric contractions, product linears and
    readouts. Backward passes (forces) cost about twice as much again; spherical harmonics and
    the radial basis are not counted.

    Args:
        model: a ``ScaleShiftMACE`` or ``Potential``; only read.
    """
    per_edge = per_atom = 0
    for record in read_layout(plain_mace_model(model)).weights:
        if record.per_edge:
            per_edge += weight_macs(record)
        else:
            per_atom += weight_macs(record)
    return per_edge, per_atom
