"""Rotation augmentation: rotated batches carry rotated labels, and training uses them."""

from __future__ import annotations

import pytest
import torch

from macelerate import load
from macelerate.data.labels import LabelKeys
from macelerate.testing import tiny_mace
from macelerate.train.augment import random_rotations, rotate_batch
from macelerate.train.config import TrainConfig
from macelerate.train.data import LabelledData
from macelerate.train.errors import TrainConfigError
from macelerate.train.loop import train
from macelerate.train.losses import LossWeights
from macelerate.train.steps import batch_loss
from macelerate.train.teacher import label_structures
from tests.train import ethanols, silicon_cells

ELEMENTS = [1, 6, 8, 14]


@pytest.fixture(scope="module")
def teacher():
    return load(tiny_mace(ELEMENTS, seed=1), dtype="float64")


def test_random_rotations_are_proper_and_seeded():
    rotations = random_rotations(5, seed=3, dtype=torch.float64)
    identity = torch.eye(3, dtype=torch.float64).expand(5, 3, 3)
    torch.testing.assert_close(rotations @ rotations.transpose(1, 2), identity)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(5, dtype=torch.float64))
    assert torch.equal(rotations, random_rotations(5, seed=3, dtype=torch.float64))
    assert not torch.equal(rotations, random_rotations(5, seed=4, dtype=torch.float64))


def test_an_invariant_model_has_the_same_loss_on_a_rotated_batch(teacher):
    """Labels turn with the structure: a rotation-invariant model sees the same errors."""
    structures = label_structures(teacher, silicon_cells(3))  # periodic: with stress
    options = {"cutoff": float(teacher.r_max), "z_table": ELEMENTS}
    data = LabelledData(structures, keys=LabelKeys(stress="stress"), graph_options=options)
    model = tiny_mace(ELEMENTS, seed=2)
    weights = LossWeights(stress=1.0)
    batch = data.batch([0, 1, 2])
    rotated = rotate_batch(batch, random_rotations(3, seed=0, dtype=torch.float64))
    assert not torch.allclose(rotated.graph["positions"], batch.graph["positions"])
    assert torch.equal(batch.graph["positions"], data.batch([0, 1, 2]).graph["positions"])
    plain = batch_loss(model, batch, weights)
    turned = batch_loss(model, rotated, weights)
    for term in ("energy", "forces", "stress"):
        torch.testing.assert_close(turned[term], plain[term], rtol=1e-9, atol=1e-12)


def test_training_with_rotation_augmentation_runs_and_refuses_hessian_rows(teacher):
    structures = label_structures(teacher, ethanols(4))
    config = TrainConfig(epochs=1, batch_size=2, max_steps=2, progress=False,
                         rotation_augmentation=True, val_fraction=0.25)  # fmt: skip
    model, report = train(tiny_mace(ELEMENTS, seed=2), structures, config=config)
    assert report.steps == 2 and all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(TrainConfigError, match="cannot rotate Hessian-row labels"):
        TrainConfig(rotation_augmentation=True, teacher_hessian_rows=2)
