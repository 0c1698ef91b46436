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


def test_training_a_loaded_potential_exports_the_full_width_model(removed):
    from macelerate.train.errors import TrainConfigError
    from macelerate.train.loop import TrainConfig, train
    from macelerate.train.teacher import label_structures

    labelled = label_structures(load(tiny_mace([1, 6, 8], channels=8, seed=6)), ethanols(4))
    settings = TrainConfig(epochs=1, batch_size=2, progress=False, lr=1e-3)
    potential = load(removed, dtype="float64")
    for given in (potential, potential.model):  # narrowed radial layers in both
        trained, _ = train(given, labelled, config=settings)
        assert trained.state_dict()[RADIAL].shape == removed.state_dict()[RADIAL].shape
        np.testing.assert_allclose(  # the trained, widened model runs as the trained copy
            load(trained, dtype="float64").predict(labelled[0]).forces,
            load(load(trained, dtype="float64").model, dtype="float64").predict(labelled[0]).forces,
            atol=1e-10,
        )
    tabulated = load(removed, dtype="float64", radial="tabulated")
    with pytest.raises(TrainConfigError, match="tabulate_radial"):
        train(tabulated, labelled, config=settings)
