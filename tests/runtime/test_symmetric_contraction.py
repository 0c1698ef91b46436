"""The table-based symmetric contraction equals mace-torch's, forward, backward and double
backward, for every correlation order and output irrep a tiny model can have."""

from __future__ import annotations

import copy

import pytest
import torch

from macelerate.runtime.symmetric_contraction import (
    FastSymmetricContraction,
    supports_fast_contraction,
)
from macelerate.testing import tiny_mace


def _inputs(contraction, n_elements: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    source = contraction.contractions[0]
    n_components = int(source.U_matrix_1.shape[-2])
    x = torch.randn(23, source.num_features, n_components, generator=generator, dtype=torch.float64)
    elements = torch.randint(0, n_elements, (23,), generator=generator)
    elements[:3] = 0  # every element present at least once, one element several times
    y = torch.nn.functional.one_hot(elements, n_elements).to(torch.float64)
    return x.requires_grad_(True), y


@pytest.mark.parametrize("frozen", [False, True], ids=["training", "frozen"])
@pytest.mark.parametrize("correlation", [1, 2, 3])
@pytest.mark.parametrize("max_L", [0, 1, 2])
def test_equals_mace_with_gradients(correlation, max_L, frozen):
    # trainable weights: the monomial form; frozen weights: the gradient (Euler) form
    model = tiny_mace([1, 6, 8], max_L=max_L, max_ell=2, correlation=correlation)
    model.requires_grad_(not frozen)
    for product in model.products:
        source = product.symmetric_contractions
        assert supports_fast_contraction(source)
        fast = FastSymmetricContraction(source)
        assert all(c.frozen() == frozen for c in fast.contractions)
        x, y = _inputs(source, 3)
        expected, actual = source(x, y), fast(x, y)
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
        (g_expected,) = torch.autograd.grad(expected.pow(2).sum(), x, create_graph=True)
        (g_actual,) = torch.autograd.grad(actual.pow(2).sum(), x, create_graph=True)
        torch.testing.assert_close(g_actual, g_expected, rtol=1e-12, atol=1e-12)
        # double backward (force-matching training differentiates the forces again)
        (h_expected,) = torch.autograd.grad(g_expected.sum(), x)
        (h_actual,) = torch.autograd.grad(g_actual.sum(), x)
        torch.testing.assert_close(h_actual, h_expected, rtol=1e-11, atol=1e-11)


def test_state_dict_is_mace_s_and_weight_gradients_flow():
    model = tiny_mace([1, 8], max_L=1, correlation=3)
    source = model.products[0].symmetric_contractions
    fast = FastSymmetricContraction(copy.deepcopy(source))
    assert fast.state_dict().keys() == source.state_dict().keys()
    x, y = _inputs(source, 2)
    weights = [p for p in fast.parameters() if p.requires_grad]
    loss = fast(x, y).pow(2).sum()
    grads = torch.autograd.grad(loss, weights)
    reference = torch.autograd.grad(
        source(x, y).pow(2).sum(), [p for p in source.parameters() if p.requires_grad]
    )
    for actual, expected in zip(grads, reference):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


def test_cached_tables_follow_weight_changes():
    model = tiny_mace([1, 8], max_L=0, correlation=2)
    source = copy.deepcopy(model.products[0].symmetric_contractions)
    for parameter in source.parameters():
        parameter.requires_grad_(False)  # frozen: the tables are cached
    fast = FastSymmetricContraction(source)
    x, y = _inputs(source, 2)
    before = fast(x, y)
    with torch.no_grad():
        source.contractions[0].weights_max.mul_(2.0)  # in place: version counter changes
    after = fast(x, y)
    torch.testing.assert_close(after, source(x, y), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("frozen", [False, True], ids=["training", "frozen"])
def test_live_components_skip_exact_zeros(frozen):
    model = tiny_mace([1, 6], max_L=1, max_ell=2, correlation=3)
    model.requires_grad_(not frozen)
    source = model.products[0].symmetric_contractions
    x, y = _inputs(source, 2)
    with torch.no_grad():
        x[:, :, 1:] = 0.0  # only the scalar component is non-zero
    fast = FastSymmetricContraction(source, live_components=[0])
    torch.testing.assert_close(fast(x, y), source(x, y), rtol=1e-12, atol=1e-12)
    (g_fast,) = torch.autograd.grad(fast(x, y).pow(2).sum(), x)
    (g_source,) = torch.autograd.grad(source(x, y).pow(2).sum(), x)
    torch.testing.assert_close(g_fast[:, :, 0], g_source[:, :, 0], rtol=1e-12, atol=1e-12)


def test_frozen_tables_follow_weight_changes_and_ignore_a_no_grad_forward():
    model = tiny_mace([1, 8], max_L=1, correlation=3)
    source = copy.deepcopy(model.products[0].symmetric_contractions).requires_grad_(False)
    fast = FastSymmetricContraction(source)
    x, y = _inputs(source, 2)
    with torch.no_grad():
        fast(x, y)  # tables built without autograd are reused with it
    before = fast(x, y)
    (grad,) = torch.autograd.grad(before.sum(), x)
    (expected,) = torch.autograd.grad(source(x, y).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        source.contractions[0].weights[0].mul_(3.0)  # the order-2 weights, in place
    torch.testing.assert_close(fast(x, y), source(x, y), rtol=1e-12, atol=1e-12)


def test_frozen_tables_are_reused_for_equal_weights_in_new_tensors():
    # a precision policy that upcasts stored weights hands in new tensors at every call
    model = tiny_mace([1, 8], max_L=0, correlation=3)
    source = copy.deepcopy(model.products[0].symmetric_contractions).requires_grad_(False)
    contraction = FastSymmetricContraction(source).contractions[0]
    present = torch.tensor([0, 1])
    first = contraction.derivative_tables(present)
    copied = contraction.weights_max.detach().clone()
    contraction.weights_max = torch.nn.Parameter(copied, requires_grad=False)
    assert contraction.derivative_tables(present) is first
    with torch.no_grad():
        contraction.weights_max[0, 0, 0] += 1.0
    changed = contraction.derivative_tables(present)
    assert changed is not first
    assert not all(torch.equal(a, b) for a, b in zip(changed, first))
