"""Low-rank species embeddings: which weights, the projection, training at a rank, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.io import write

from macelerate import load
from macelerate.cli import main
from macelerate.compress.species_rank import (
    SpeciesProjector,
    SpeciesRankError,
    low_rank_species,
    species_blocks,
    species_matrix,
)
from macelerate.models.student import StudentConfig, build_student
from macelerate.testing import tiny_mace
from macelerate.train.errors import TrainConfigError
from macelerate.train.export import fuse_all
from macelerate.train.loop import TrainConfig, train
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 7, 8]


@pytest.fixture(scope="module")
def model():
    return tiny_mace(ELEMENTS, channels=8, max_L=1, max_ell=2, correlation=3, seed=3)


def _rank(matrix: torch.Tensor) -> int:
    singular = torch.linalg.svdvals(matrix.double())
    return int((singular > 1e-10 * singular[0]).sum())


def test_every_element_dependent_weight_is_covered_once(model):
    blocks = species_blocks(model)
    names = [b.name for b in blocks]
    assert names[0] == "node_embedding.linear.weight"
    assert sum("skip_tp" in n for n in names) == len(model.interactions)
    contraction_weights = [n for n, _ in model.named_parameters() if "symmetric_contractions" in n]
    assert sorted(n for n in names if "symmetric_contractions" in n) == sorted(contraction_weights)
    named = dict(model.named_parameters())
    for block in blocks:
        assert block.index.shape[0] == len(ELEMENTS)
        assert block.index.unique().numel() == block.index.numel()  # no entry twice
        assert int(block.index.max()) < named[block.name].numel()
    # the contraction weights hold element e in row e
    name = next(n for n in names if n.endswith("weights_max"))
    weight = named[name]
    block = blocks[names.index(name)]
    assert torch.equal(weight.reshape(-1)[block.index], weight.reshape(len(ELEMENTS), -1))
    # e3nn's node embedding: weight [n_elements, channels] flattened in that order
    embedding = model.node_embedding.linear.weight.view(len(ELEMENTS), -1)
    assert torch.equal(species_matrix(model, blocks[:1]), embedding)


def test_the_rows_are_what_each_element_sees(model):
    """Changing one element's row changes that element's node energy alone (first layer)."""
    blocks = species_blocks(model)
    perturbed = load(model, dtype="float64").model  # the loaded copy, not the fixture
    named = dict(perturbed.named_parameters())
    skip = next(b for b in blocks if b.name == "interactions.0.skip_tp.weight")
    with torch.no_grad():
        named[skip.name].view(-1)[skip.index[1]] += 0.5  # carbon's entries only
    atoms = ethanols(1)[0]
    water = atoms[[a.index for a in atoms if a.symbol in "HO"]]  # no carbon
    before = load(model, dtype="float64").predict(water).energy
    assert load(perturbed, dtype="float64").predict(water).energy == pytest.approx(before)
    assert load(perturbed, dtype="float64").predict(atoms).energy != pytest.approx(
        load(model, dtype="float64").predict(atoms).energy
    )


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_projection_is_the_best_rank_r_matrix(model, rank):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    structures = ethanols(2)
    projected, report = low_rank_species(model, rank, structures=structures)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # input kept
    blocks = species_blocks(projected)
    matrix = species_matrix(projected, blocks)
    assert _rank(matrix) == rank
    singular = np.array(report.singular_values)
    assert singular.shape == (len(ELEMENTS),) and np.all(np.diff(singular) <= 0)
    # Eckart-Young: the Frobenius change is the norm of the dropped singular values
    expected = np.sqrt((singular[rank:] ** 2).sum() / (singular**2).sum())
    assert report.relative_change == pytest.approx(expected, rel=1e-8)
    original = species_matrix(model, species_blocks(model)).double()
    assert float((original - matrix.double()).norm() / original.norm()) == pytest.approx(expected)
    # the other weights are untouched
    covered = {b.name for b in blocks}
    for name, value in projected.state_dict().items():
        if name not in covered:
            assert torch.equal(value, before[name]), name
    assert report.parameters == len(ELEMENTS) * matrix.shape[1]
    assert report.factored_parameters == rank * (len(ELEMENTS) + matrix.shape[1])
    assert report.rms_force_change > 0 and report.max_force_change >= report.rms_force_change
    # still a plain mace-torch model that macelerate loads and runs
    forces = load(projected, dtype="float64").predict(structures[0]).forces
    assert np.isfinite(forces).all()


def test_projection_is_idempotent(model):
    projected, _ = low_rank_species(model, 2)
    again, report = low_rank_species(projected, 2)
    assert report.relative_change < 1e-12
    for (name, a), b in zip(projected.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-12, rtol=0), name


@pytest.mark.parametrize("rank", [0, 4, 2.5, True])
def test_a_rank_out_of_range_is_refused(model, rank):
    with pytest.raises(SpeciesRankError, match=r"integer in \[1, 3\]"):
        low_rank_species(model, rank)


def test_students_fused_or_not_have_the_same_blocks():
    config = StudentConfig(atomic_numbers=(1, 6, 8), atomic_energies=(0.0, 0.0, 0.0),
                           channels=8, max_L=1, dtype="float64")  # fmt: skip
    student = build_student(config)
    names = [b.name for b in species_blocks(student)]
    assert names[0] == "backbone.node_embedding.linear.weight"
    fused = build_student(config)
    fused.load_state_dict(student.state_dict())
    assert fuse_all(fused) > 0
    assert [b.name for b in species_blocks(fused)] == names
    projector = SpeciesProjector(fused, 1)
    projector.project()
    assert _rank(species_matrix(fused, projector.blocks)) == 1


def test_training_keeps_the_species_rank():
    model = tiny_mace([1, 6, 8], channels=8, max_L=1, seed=4)
    labelled = label_structures(load(tiny_mace([1, 6, 8], channels=8, seed=6)), ethanols(4))
    settings = {"epochs": 2, "batch_size": 2, "progress": False, "lr": 1e-2}
    trained, report = train(model, labelled, config=TrainConfig(**settings, species_rank=2))
    assert _rank(species_matrix(trained, species_blocks(trained))) == 2
    summary = report.species_rank
    assert summary["rank"] == 2 and summary["n_elements"] == 3
    assert summary["singular_values"][2] < 1e-10 * summary["singular_values"][0]
    full, full_report = train(model, labelled, config=TrainConfig(**settings))
    assert _rank(species_matrix(full, species_blocks(full))) == 3
    assert full_report.species_rank is None
    with pytest.raises(SpeciesRankError, match="integer in"):
        train(model, labelled, config=TrainConfig(**settings, species_rank=3))
    with pytest.raises(TrainConfigError, match="species_rank"):
        TrainConfig(species_rank=0)


def test_prune_cli_applies_and_keeps_the_species_rank(tmp_path, model, capsys):
    model_file = tmp_path / "model.model"
    torch.save(model, model_file)
    teacher = load(tiny_mace(ELEMENTS, channels=8, seed=7))
    frames = label_structures(teacher, ethanols(4))
    data = tmp_path / "data.xyz"
    write(data, frames)
    out, report = tmp_path / "ranked.pt", tmp_path / "ranked.json"
    args = ["prune", str(model_file), "--channels", "8", "--calibration", str(data),
            "--out", str(out), "--no-progress", "--dtype", "float64",
            "--energy-key", "energy", "--forces-key", "forces"]  # fmt: skip
    assert main([*args, "--species-rank", "4"]) == 2
    assert "integer in [1, 3]" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--species-rank", "2", "--finetune", str(data), "--max-steps", "2",
                 "--json", str(report)]) == 0  # fmt: skip
    summary = json.loads(report.read_text())
    assert summary["species_rank"]["rank"] == 2 and summary["species_rank"]["rms_force_change"] > 0
    assert "species rank 2 of 4 elements" in capsys.readouterr().out
    ranked = load(out, allow_pickle=False)
    assert [t["name"] for t in ranked.source.transforms_applied][-3:] == [
        "prune", "species_rank", "recovery"
    ]  # fmt: skip
    assert _rank(species_matrix(ranked.model, species_blocks(ranked.model))) == 2  # after training
