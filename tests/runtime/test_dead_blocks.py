"""Work that only meets exactly-zero weights is found and skipped without changing results."""

from __future__ import annotations

import numpy as np
import torch

from macelerate.models.loading import load
from macelerate.runtime.accelerate import RuntimeOptions, accelerate_in_place
from macelerate.runtime.dead_blocks import (
    interaction_liveness,
    linear_live_forward,
    live_linear_instructions,
    live_weight_columns,
)
from macelerate.testing import tiny_mace


def _zero_higher_l_messages(model: torch.nn.Module, interaction: int) -> None:
    """Zero the L > 0 blocks of one interaction's linear (as GO-MACE's last interaction has)."""
    linear = model.interactions[interaction].linear
    sizes = [int(np.prod(ins.path_shape)) for ins in linear.instructions]
    with torch.no_grad():
        for ins, block in zip(linear.instructions, linear.weight.split(sizes)):
            if linear.irreps_out[ins.i_out].ir.l > 0:
                block.zero_()


def test_liveness_reads_zero_blocks():
    model = tiny_mace([1, 8], max_L=0, max_ell=2)
    untouched = interaction_liveness(model.interactions[1])
    assert untouched is not None and untouched.all_live
    _zero_higher_l_messages(model, 1)
    liveness = interaction_liveness(model.interactions[1])
    assert liveness is not None and not liveness.all_live
    conv = model.interactions[1].conv_tp
    expected_paths = tuple(conv.irreps_out[ins.i_out].ir.l == 0 for ins in conv.instructions)
    assert liveness.live_paths == expected_paths
    assert liveness.live_components == (0,)
    assert len(live_weight_columns(conv, liveness.live_paths)) == sum(
        int(np.prod(ins.path_shape)) for ins, live in zip(conv.instructions, expected_paths) if live
    )


def test_skipping_dead_blocks_is_exact(silicon, ethanol):
    model = tiny_mace([1, 6, 8, 14], max_L=1, max_ell=3, correlation=3)
    _zero_higher_l_messages(model, 1)
    reference = load(model, fuse_message_passing=False)
    fast = load(model, fuse_message_passing=False)
    report = accelerate_in_place(fast.model)
    assert report.skipped_paths[1] > 0 and report.skipped_radial_columns[1] > 0
    assert report.skipped_components[1] > 0
    blocks = fast.model.interactions
    assert blocks[0].forward.keywords["live_linear"] is None  # nothing dead there
    linear = model.interactions[1].linear  # only the blocks into L = 0 outputs are computed
    scalar = tuple(i for i, ins in enumerate(linear.instructions)
                   if linear.irreps_out[ins.i_out].ir.l == 0)  # fmt: skip
    assert blocks[1].forward.keywords["live_linear"] == scalar
    assert len(scalar) < len(linear.instructions)
    for atoms in (silicon, ethanol):
        stress = bool(atoms.pbc.all())
        a = reference.predict(atoms, compute_stress=stress)
        b = fast.predict(atoms, compute_stress=stress)
        np.testing.assert_allclose(b.energy, a.energy, rtol=0, atol=1e-11)
        np.testing.assert_allclose(b.forces, a.forces, rtol=0, atol=1e-11)
        if stress:
            np.testing.assert_allclose(b.stress, a.stress, rtol=0, atol=1e-12)


def test_a_linear_without_its_zero_blocks_equals_e3nn():
    linear = tiny_mace([1, 8], max_L=1, max_ell=2).interactions[0].linear
    assert live_linear_instructions(linear) is None  # every block non-zero
    sizes = [int(np.prod(ins.path_shape)) for ins in linear.instructions]
    with torch.no_grad():
        linear.weight.split(sizes)[1].zero_()  # an output irrep fed by nothing else
    live = live_linear_instructions(linear)
    assert live == tuple(i for i in range(len(sizes)) if i != 1)
    x = torch.randn(5, linear.irreps_in.dim, dtype=torch.float64)
    torch.testing.assert_close(linear_live_forward(linear, x, live), linear(x), rtol=0, atol=1e-14)


def test_options_switch_kernels_off():
    model = tiny_mace([1, 8])
    report = accelerate_in_place(
        load(model, fuse_message_passing=False).model,
        RuntimeOptions(fuse_convolution=False, fast_products=False),
    )
    assert report.fused_blocks == 0 and report.fast_products == 0
