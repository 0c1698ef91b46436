"""INT8 readouts: the int8 kernel equals the dequantised map, errors are reported, forces are
still the gradient of the energy, and the source model is never changed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate.bench.worker import lever_options
from macelerate.checks.gradients import check_gradients
from macelerate.models.loading import load
from macelerate.runtime.int8_linear import Int8Linear, quantize_rows
from macelerate.testing import tiny_mace
from macelerate.transforms import quantize_readouts
from macelerate.transforms.int8_readouts import QuantizationError, dense_map


def test_row_quantisation_is_within_half_a_step_of_the_weights():
    weight = torch.randn(6, 20, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    codes, scales = quantize_rows(weight)
    assert codes.dtype == torch.int8 and int(codes.abs().max()) == 127
    error = (codes.double() * scales[:, None] - weight).abs()
    assert bool((error <= 0.5 * scales[:, None] + 1e-15).all())


def test_int8_kernel_matches_the_dequantised_map_and_its_gradient():
    generator = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(8, 32, generator=generator), torch.randn(8, generator=generator)
    layer = Int8Linear(weight, bias)
    x = torch.randn(40, 32, generator=generator, requires_grad=True)
    out = layer(x)  # float32 on CPU: torch._weight_int8pack_mm
    expected = x.detach().double() @ layer.dequantized.double().T + bias.double()
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-4)
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, layer.dequantized.sum(dim=0).expand_as(grad))


def test_quantize_readouts_reports_small_errors_and_leaves_the_source_alone(ethanol):
    source = load(tiny_mace([1, 6, 8], channels=8), dtype="float64")
    before = {k: v.clone() for k, v in source.model.state_dict().items()}
    quantized, report = quantize_readouts(source, probe=[ethanol])
    assert report.linears == 3 and report.int8_bytes < report.float_bytes
    assert report.max_weight_error <= 0.5 / 127 + 1e-12
    assert 0 < report.max_force_error < 0.05 and report.max_energy_error < 0.05
    after = source.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the source is unchanged
    assert any(isinstance(m, Int8Linear) for m in quantized.model.modules())
    assert quantized.transforms[-1].name == "int8_readouts"
    assert quantized.transforms[-1].summary["linears"] == 3
    result = check_gradients(quantized, ethanol, n_samples=4, seed=2)  # forces = -dE/dr
    assert result.force_rel < 1e-6


def test_dense_map_reads_an_e3nn_linear_exactly():
    model = tiny_mace([1, 6, 8], channels=8).double()
    linear = model.readouts[1].linear_1
    weight, bias = dense_map(linear, linear.irreps_in.dim)
    x = torch.randn(5, linear.irreps_in.dim, dtype=torch.float64)
    expected = linear(x)
    got = x @ weight.T + (0 if bias is None else bias)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_load_and_bench_levers_name_int8_readouts(ethanol):
    potential = load(tiny_mace([1, 6, 8], channels=8), dtype="float32", readouts="int8")
    assert np.isfinite(potential.predict(ethanol).forces).all()
    assert lever_options("int8-readouts+tabulated") == {"readouts": "int8", "radial": "tabulated"}
    with pytest.raises(ValueError, match="readouts must be one of"):
        load(tiny_mace([1, 6, 8], channels=8), readouts="int4")
    with pytest.raises(QuantizationError, match="before applying a precision policy"):
        quantize_readouts(load(tiny_mace([1, 6, 8], channels=8), precision="fp32"))
