"""spline_rows: four table rows per edge, weighted; first and second derivatives of the weights."""

from __future__ import annotations

import pytest
import torch

from macelerate.runtime.spline_rows import power_weights, spline_rows


def _case(n_edges: int = 37, n_intervals: int = 9, out: int = 11, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    table = torch.randn(4 * n_intervals, out, dtype=torch.float64, generator=generator)
    interval = torch.randint(0, n_intervals, (n_edges,), generator=generator)
    weights = torch.randn(n_edges, 4, dtype=torch.float64, generator=generator)
    return weights, interval, table


def _reference(weights, interval, table):
    rows = table.view(-1, 4, table.shape[1])[interval]  # [n, 4, out]
    return torch.einsum("nr,nro->no", weights, rows)


def test_values_are_the_weighted_rows_whole_and_in_blocks():
    weights, interval, table = _case()
    expected = _reference(weights, interval, table)
    torch.testing.assert_close(spline_rows(weights, interval, table), expected)
    blocks = spline_rows(weights, interval, table, [4, 0, 7])
    assert [b.shape for b in blocks] == [(37, 4), (37, 0), (37, 7)]
    torch.testing.assert_close(torch.cat(blocks, dim=1), expected)
    with pytest.raises(ValueError, match="do not split 11"):
        spline_rows(weights, interval, table, [4, 4])


@pytest.mark.parametrize("widths", [None, (5, 6), (11,)])
def test_first_and_second_derivatives_of_the_weights(widths):
    _, interval, table = _case()
    t = torch.rand(37, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    t.requires_grad_(True)

    def f(t):
        out = spline_rows(power_weights(t), interval, table, widths)
        return out if widths is None else torch.cat(out, dim=1)

    assert torch.autograd.gradcheck(f, (t,))
    assert torch.autograd.gradgradcheck(f, (t,))


def test_a_block_without_gradient_contributes_nothing():
    weights, interval, table = _case()
    weights.requires_grad_(True)
    first, second = spline_rows(weights, interval, table, [5, 6])
    (grad,) = torch.autograd.grad(second.sum(), weights)
    reference = weights.detach().clone().requires_grad_(True)
    expected_sum = _reference(reference, interval, table)[:, 5:].sum()
    (expected,) = torch.autograd.grad(expected_sum, reference)
    torch.testing.assert_close(grad, expected)


def test_half_precision_tables_take_the_gather_path():
    # sampled_addmm has no bfloat16 kernel on CPU: the backward falls back to gathered rows
    weights, interval, table = _case()
    half = weights.to(torch.bfloat16).requires_grad_(True)
    out = spline_rows(half, interval, table.to(torch.bfloat16), [5, 6])
    (grad,) = torch.autograd.grad(sum(block.float().sum() for block in out), half)
    reference = weights.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(_reference(reference, interval, table).sum(), reference)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad.double(), expected, rtol=2e-2, atol=5e-2)
