"""Students: forward contract for every option, graphs, ZBL, checkpoints and mace export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate.errors import ModelFileError
from macelerate.graph import build_graph
from macelerate.mace.config import describe_mace_model
from macelerate.models.checkpoint import make_provenance, save_checkpoint
from macelerate.models.student import (
    StudentConfig,
    StudentError,
    build_student,
    export_backbone,
    load_student,
    save_student,
)

BASE = {
    "atomic_numbers": [1, 6, 8],
    "atomic_energies": [-1.0, -2.0, -3.0],
    "channels": 4,
    "max_ell": 1,
    "r_max": 3.5,
    "radial_mlp": [8],
    "head_channels": 4,
    "confidence_bins": 10,
}
OPTIONS = {
    "hard": {"max_neighbors": 3, "confidence_head": True},
    "smooth": {"max_neighbors": 3, "smooth_cap": True, "zbl": True},
    "direct": {
        "max_neighbors": 4, "smooth_cap": True, "direct_forces": True, "direct_stress": True,
        "confidence_head": True,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def students():
    built = {}
    for seed, (name, options) in enumerate(OPTIONS.items()):
        torch.manual_seed(seed)
        built[name] = build_student({**BASE, **options})
    return built


def _structures():
    rng = np.random.default_rng(0)
    crystal = Atoms("C3H4O", positions=rng.random((8, 3)) * 4.0, cell=np.eye(3) * 4.0, pbc=True)
    squeezed = crystal.copy()
    squeezed.set_cell(np.diag([3.9, 4.0, 4.2]), scale_atoms=True)
    return [crystal, squeezed]


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize(
    "compute_force,compute_stress", [(True, True), (True, False), (False, False)]
)
def test_forward_outputs_for_every_option(students, name, compute_force, compute_stress):
    student = students[name]
    graph = student.build_graph(_structures(), min_distance=None)
    out = student(graph, compute_force=compute_force, compute_stress=compute_stress)
    assert out["energy"].shape == (2,) and out["node_feats"].shape[0] == 16
    assert ("forces" in out) == compute_force and ("stress" in out) == compute_stress
    if compute_force:
        assert out["forces"].shape == (16, 3) and torch.isfinite(out["forces"]).all()
    if compute_stress:
        assert out["stress"].shape == (2, 3, 3) and torch.isfinite(out["stress"]).all()
    has_confidence = student.config.confidence_head
    assert ("confidence_logits" in out) == has_confidence
    if has_confidence:
        assert out["confidence_logits"].shape == (16, 10)
        assert student.confidence_bins.shape == (11,)


@pytest.mark.parametrize("name", list(OPTIONS))
def test_training_forward_gives_trainable_forces(students, name):
    student = students[name]
    graph = student.build_graph(_structures(), min_distance=None)
    positions = graph["positions"].clone()
    out = student(graph, training=True, compute_force=True)
    (out["forces"] ** 2).sum().backward()
    gradients = [p.grad for p in student.backbone.parameters() if p.grad is not None]
    assert gradients and any(g.abs().sum() > 0 for g in gradients)
    assert torch.equal(graph["positions"], positions) and not graph["positions"].requires_grad
    student.zero_grad(set_to_none=True)


def test_confidence_loss_does_not_reach_the_backbone(students):
    student = students["direct"]
    out = student(student.build_graph(_structures(), min_distance=None), compute_force=False)
    targets = torch.zeros(16, dtype=torch.int64)
    torch.nn.functional.cross_entropy(out["confidence_logits"], targets).backward()
    assert all(p.grad is None for p in student.backbone.parameters())
    assert all(p.grad is not None for p in student.confidence.parameters())
    student.zero_grad(set_to_none=True)


def test_graph_options_build_capped_graphs(students):
    hard, smooth = students["hard"], students["smooth"]
    assert hard.graph_options() == {"cutoff": 3.5, "max_neighbors": 3}
    assert hard.edge_selection() is None
    graph = hard.build_graph(_structures(), min_distance=None)
    assert torch.bincount(graph["edge_index"][1]).max() <= 3
    options = smooth.graph_options()
    assert options == {"cutoff": pytest.approx(3.5 + 2 * 0.2)}
    selection = smooth.edge_selection()
    assert selection["max_neighbors"] == 3 and selection["cutoff"] == 3.5
    assert selection["keep_within"] > 0  # ZBL edges are never pruned
    full = build_graph(_structures(), z_table=[1, 6, 8], min_distance=None, **options)
    pruned = smooth.build_graph(_structures(), min_distance=None)
    assert pruned["edge_index"].shape[1] < full["edge_index"].shape[1]
    assert torch.bincount(pruned["edge_index"][1]).max() > 3  # partial-weight edges kept
    energies = [smooth(graph, compute_force=False)["energy"] for graph in (full, pruned)]
    torch.testing.assert_close(energies[0], energies[1], rtol=0, atol=1e-10)
    assert smooth.atomic_numbers == [1, 6, 8] and smooth.r_max == 3.5


def test_zbl_energy_rises_steeply_at_short_distance(students):
    student = students["smooth"]
    distances = [0.3, 0.4, 0.5, 0.7]
    dimers = [Atoms("H2", positions=[[0, 0, 0], [0, 0, d]]) for d in distances]
    out = student(student.build_graph(dimers), compute_force=False)
    energies = out["energy"].detach().numpy()
    assert np.all(np.diff(energies) < 0)
    assert energies[0] - energies[-1] > 2.0  # eV: the ZBL wall, not network noise


def test_save_load_round_trip_gives_identical_outputs(students, tmp_path):
    student = students["direct"]
    path = save_student(tmp_path / "student.pt", student, make_provenance("test"))
    loaded = load_student(path)
    assert loaded.config == student.config
    graph = student.build_graph(_structures(), min_distance=None)
    before = student(graph, compute_stress=True)
    after = loaded(graph, compute_stress=True)
    for key in ("energy", "forces", "stress", "confidence_logits"):
        assert torch.equal(before[key], after[key]), key


def test_load_student_refuses_plain_mace_checkpoints(students, tmp_path):
    backbone = students["hard"].backbone
    path = save_checkpoint(
        tmp_path / "plain.pt", model_config=describe_mace_model(backbone),
        state_dict=backbone.state_dict(), provenance=make_provenance("test"),
    )  # fmt: skip
    with pytest.raises(ModelFileError, match="not a student"):
        load_student(path)


def test_export_backbone_matches_a_conservative_student(students):
    student = students["hard"]
    model = export_backbone(student, allow_uncapped=True)  # the confidence head is left out
    assert type(model).__name__ == "ScaleShiftMACE"
    assert not any("confidence" in key for key in model.state_dict())
    graph = student.build_graph(_structures(), min_distance=None)  # capped: same graph for both
    mine = student(graph)
    theirs = model(dict(graph), compute_force=True)
    assert torch.equal(mine["energy"], theirs["energy"])
    assert torch.equal(mine["forces"], theirs["forces"])


def test_export_refuses_parts_mace_cannot_hold(students):
    with pytest.raises(StudentError, match="direct force head.*smooth neighbour cap"):
        export_backbone(students["direct"])
    with pytest.raises(StudentError, match="it has a smooth neighbour cap"):
        export_backbone(students["smooth"])
    with pytest.raises(StudentError, match="allow_uncapped"):
        export_backbone(students["hard"])


def test_config_rejects_unknown_keys_and_impossible_options():
    with pytest.raises(StudentError, match="unknown StudentConfig keys \\['chanels'\\]"):
        StudentConfig.from_dict({**BASE, "chanels": 8})
    with pytest.raises(StudentError, match="smooth_cap needs max_neighbors"):
        StudentConfig.from_dict({**BASE, "smooth_cap": True})
    with pytest.raises(StudentError, match="node direct-force head needs 1o"):
        StudentConfig.from_dict({**BASE, "direct_forces": True, "max_L": 0})
    config = StudentConfig.from_dict(BASE)
    assert StudentConfig.from_dict(config.to_dict()) == config
    backbone = config.mace_config()
    assert backbone["hidden_irreps"] == "4x0e+4x1o" and backbone["pair_repulsion"] is False
