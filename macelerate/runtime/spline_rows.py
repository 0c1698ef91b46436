"""Weighted sums of four table rows per edge: the evaluation kernel of cubic tables.

A piecewise-cubic table of a function ``f(r) -> [out]`` stores, per interval ``k``, the cubic's
coefficients in powers of the local coordinate ``t`` as rows ``4k .. 4k + 3`` of one table
[4 * n_intervals, out]::

    f(r) = T[4k] + t T[4k+1] + t^2 T[4k+2] + t^3 T[4k+3]

:func:`spline_rows` evaluates such sums for every edge with ``embedding_bag`` (one pass over the
output, no [n, 4, out] gather) and, in the backward pass, the gradient of the four weights with
one sampled dense-dense product (``sampled_addmm``: the four dot products ``grad[e] . T[row]``
per edge and nothing else).

Powers of ``t`` rather than the Hermite basis of values and slopes: the derivative then reads
the slope rows directly; in the Hermite basis it is a difference of the (nearly equal) values at
both ends, which loses a factor ``1 / spacing`` of float32 precision.

Second derivatives (``create_graph=True``, e.g. Hessians) take a differentiable gather path.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch

ROWS = 4
"""Table rows per interval (the coefficients of a cubic)."""


def power_weights(t: torch.Tensor) -> torch.Tensor:
    """``[1, t, t^2, t^3]`` at local coordinates ``t`` [n]: [n, 4]."""
    t2 = t * t
    return torch.stack([torch.ones_like(t), t, t2, t2 * t], dim=1)


def spline_rows(
    weights: torch.Tensor,
    interval: torch.Tensor,
    table: torch.Tensor | Sequence[torch.Tensor],
    widths: Sequence[int] | None = None,
) -> Any:
    """``sum_r weights[e, r] * table[4 * interval[e] + r]``: [n, out].

    Args:
        weights: [n, 4] weights (powers of ``t``, any scale folded in), differentiable.
        interval: [n] int64 interval of every row, in ``[0, table.shape[0] // 4 - 1]``.
        table: [4 * n_intervals, out] cubic coefficients (a constant: no gradient), or a
            sequence of column blocks of such a table, each contiguous [4 * n_intervals, w_b]:
            the result is then one contiguous [n, w_b] tensor per block, each computed on its
            own (callers that evaluate the same blocks every step keep them, so nothing is
            copied per call).
        widths: with one table, columns per output block (summing to ``out``): the table is
            split (and its blocks copied) for this call, and the result is a tuple as above.

    Returns:
        [n, out], or a tuple of [n, w_b] blocks; the backward pass takes their gradients one by
        one (no [n, out] concatenation of them).
    """
    columns = (ROWS * interval).unsqueeze(1) + torch.arange(ROWS, device=interval.device)
    if isinstance(table, torch.Tensor):
        if widths is None:
            return _SplineRows.apply(weights, columns, (table,))[0]
        if sum(widths) != table.shape[1]:
            raise ValueError(f"widths {list(widths)} do not split {table.shape[1]} columns")
        table = tuple(block.contiguous() for block in table.split(list(widths), dim=1))
    return _SplineRows.apply(weights, columns, tuple(table))


class _SplineRows(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, weights: torch.Tensor, columns: torch.Tensor, blocks: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        ctx.save_for_backward(columns)
        ctx.blocks = blocks  # constants: no gradient, kept as they are
        return tuple(
            torch.nn.functional.embedding_bag(columns, block, per_sample_weights=weights,
                                              mode="sum")
            if block.shape[1] > 0 else weights.new_zeros((columns.shape[0], 0))
            for block in blocks
        )  # fmt: skip

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None):
        (columns,) = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        pairs = [(grad, block) for grad, block in zip(grads, ctx.blocks)
                 if grad is not None and block.shape[1] > 0]  # fmt: skip
        if not pairs:
            return columns.new_zeros(columns.shape, dtype=ctx.blocks[0].dtype), None, None
        if torch.is_grad_enabled():  # create_graph: a path autograd can differentiate again
            return _gathered_dot_products(pairs, columns), None, None
        return _row_dot_products(pairs, columns), None, None


def _row_dot_products(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], columns: torch.Tensor
) -> torch.Tensor:
    """``sum_b grad_b[e] . table_b[columns[e, r]]`` for every edge and row: [n, 4].

    One sparsity pattern (four entries per edge) shared by all ``(grad_b [n, w_b], table_b
    [rows, w_b])`` pairs; each pair is one sampled dense-dense product.
    """
    n = columns.shape[0]
    grad0, table0 = pairs[0]
    try:
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(
                torch.arange(0, ROWS * n + 1, ROWS, device=grad0.device),
                columns.reshape(-1),
                grad0.new_zeros(ROWS * n),
                size=(n, table0.shape[0]),
                check_invariants=False,
            )
            total = None
            for grad, table in pairs:
                part = torch.sparse.sampled_addmm(pattern, grad.contiguous(), table.t(), beta=0.0)
                total = part.values() if total is None else total + part.values()
        assert total is not None
        return total.view(n, ROWS)
    except (RuntimeError, NotImplementedError):  # a backend without sampled products
        return _gathered_dot_products(pairs, columns)


def _gathered_dot_products(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], columns: torch.Tensor
) -> torch.Tensor:
    """The same dot products from gathered rows (differentiable, more memory): [n, 4]."""
    total = torch.zeros(columns.shape, dtype=pairs[0][0].dtype, device=columns.device)
    for grad, table in pairs:
        rows = table.index_select(0, columns.reshape(-1)).view(*columns.shape, -1)
        total = total + torch.bmm(rows, grad.unsqueeze(2)).squeeze(2)
    return total
