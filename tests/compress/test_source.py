"""The plain mace-torch model behind a loaded (fused, dead-block-skipping) Potential."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate import load
from macelerate.compress import plain_mace_model
from macelerate.compress.paths import conv_paths, remove_conv_paths
from macelerate.errors import ModelFileError
from macelerate.testing import tiny_mace
from tests.train import ethanols

RADIAL = "interactions.1.conv_tp_weights.layer2.weight"


@pytest.fixture(scope="module")
def removed():
    """A model whose second interaction has a removed (dead) path: its Potential computes only
    the live paths' radial columns."""
    model = tiny_mace([1, 6, 8], channels=8, max_L=1, max_ell=2, seed=5)
    path = next(p for p in conv_paths(model) if p.layer == 1 and p.width > 8)
    return remove_conv_paths(model, [path])


def test_a_potential_with_narrowed_radial_layers_gives_back_the_same_model(removed):
    potential = load(removed, dtype="float64")
    narrow, full = potential.model.state_dict()[RADIAL], removed.state_dict()[RADIAL]
    assert narrow.shape[1] < full.shape[1]  # the runtime computes only live columns
    plain = plain_mace_model(potential)
    assert plain.state_dict()[RADIAL].shape == full.shape
    atoms = ethanols(1)[0]
    expected = load(removed, dtype="float64").predict(atoms)
    got = load(plain, dtype="float64").predict(atoms)
    assert got.energy == pytest.approx(expected.energy, abs=1e-10)
    np.testing.assert_allclose(got.forces, expected.forces, atol=1e-10)
    # the dead columns are zero; the live ones are the model's
    widened = plain.state_dict()[RADIAL]
    live = widened.abs().sum(0) > 0
    assert int(live.sum()) == narrow.shape[1]
    assert torch.equal(widened[:, live], full[:, live].to(widened.dtype))


def test_a_weight_of_another_shape_is_refused_not_replaced(removed):
    potential = load(removed, dtype="float64")
    readout = potential.model.readouts[0].linear
    readout.weight = torch.nn.Parameter(torch.zeros(readout.weight.numel() + 1))
    with pytest.raises(ModelFileError, match="readouts.0.linear.weight"):
        plain_mace_model(potential)
