"""Hybrid students: attention and cartesian layers inside a student's mace-torch backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate import load
from macelerate.graph.rotation import rotation_matrix
from macelerate.models.checkpoint import make_provenance
from macelerate.models.saving import save_model
from macelerate.models.scalar_blocks import (
    CartesianInteraction,
    ScalarUpdate,
    SmoothAttentionInteraction,
)
from macelerate.models.student import StudentConfig, StudentError, build_student, export_backbone

BASE = {
    "atomic_numbers": [1, 6, 8],
    "atomic_energies": [-1.0, -2.0, -3.0],
    "channels": 8,
    "max_ell": 1,
    "r_max": 3.5,
    "radial_mlp": [8],
    "confidence_bins": 10,
}
KINDS = {
    "attention": ["attention", "attention"],
    "hybrid": ["mace", "attention"],
    "cartesian": ["mace", "cartesian"],
}


@pytest.fixture(scope="module")
def students():
    built = {}
    for seed, (name, layers) in enumerate(KINDS.items()):
        torch.manual_seed(seed)
        built[name] = build_student({**BASE, "layers": layers, "max_neighbors": 5,
                                     "smooth_cap": True, "confidence_head": True})  # fmt: skip
    return built


def _crystal(seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    positions = rng.random((8, 3)) * 4.0
    return Atoms("C3H4O", positions=positions, cell=np.diag([4.0, 4.1, 4.2]), pbc=True)


def _energy_forces(student, atoms):
    out = student(student.build_graph([atoms], min_distance=None), compute_stress=False)
    return float(out["energy"][0].detach()), out["forces"].detach().numpy()


def test_layers_are_installed_and_equivariance_follows_the_kinds(students):
    backbone = students["hybrid"].backbone
    assert "InteractionBlock" in type(backbone.interactions[0]).__name__  # mace-torch's own
    assert isinstance(backbone.interactions[1], SmoothAttentionInteraction)
    assert isinstance(backbone.products[1], ScalarUpdate)
    assert isinstance(students["cartesian"].backbone.interactions[1], CartesianInteraction)
    assert students["hybrid"].config.equivariant and not students["cartesian"].config.equivariant


@pytest.mark.parametrize("name", ["attention", "hybrid"])
def test_attention_students_are_invariant_and_forces_rotate(students, name):
    student = students[name]
    atoms = _crystal()
    energy, forces = _energy_forces(student, atoms)
    rotation = rotation_matrix(np.random.default_rng(3))
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.set_cell(atoms.cell.array @ rotation.T)
    energy_r, forces_r = _energy_forces(student, turned)
    assert abs(energy_r - energy) < 1e-10 * max(1.0, abs(energy))
    np.testing.assert_allclose(forces_r, forces @ rotation.T, atol=1e-10)


def test_cartesian_layers_are_not_invariant(students):
    student = students["cartesian"]
    atoms = _crystal()
    energy, _ = _energy_forces(student, atoms)
    turned = atoms.copy()
    rotation = rotation_matrix(np.random.default_rng(3))
    turned.positions = atoms.positions @ rotation.T
    turned.set_cell(atoms.cell.array @ rotation.T)
    assert abs(_energy_forces(student, turned)[0] - energy) > 1e-8


@pytest.mark.parametrize("name", list(KINDS))
def test_forces_are_the_energy_gradient(students, name):
    student = students[name]
    atoms = _crystal(1)
    _, forces = _energy_forces(student, atoms)

    delta = 1e-5
    numeric = np.zeros((3, 3))
    for row, atom in enumerate((0, 3, 7)):
        for k in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[atom, k] += sign * delta
                energies.append(_energy_forces(student, moved)[0])
            numeric[row, k] = -(energies[0] - energies[1]) / (2 * delta)
    np.testing.assert_allclose(forces[[0, 3, 7]], numeric, atol=1e-6)


@pytest.mark.parametrize("name", list(KINDS))
def test_energy_is_continuous_as_a_neighbour_crosses_the_cutoff(students, name):
    student = students[name]
    r_max = student.r_max

    def energy(distance: float) -> float:
        atoms = Atoms("CO", positions=[[0, 0, 0], [distance, 0.3, 0.1]])
        return _energy_forces(student, atoms)[0]

    inside = np.hypot(r_max - 1e-4, 0.0)
    far = energy(r_max + 1.0)  # no edge at all
    assert abs(energy(np.sqrt(inside**2 - 0.1)) - far) < 1e-8
    assert abs(energy(2.0) - far) > 1e-6  # the pair does interact well inside the cutoff


def test_save_load_and_runtime_transforms_keep_hybrid_outputs(students, tmp_path):
    student = students["hybrid"]
    path = save_model(tmp_path / "hybrid.pt", student, provenance=make_provenance("test"))
    atoms = _crystal(2)
    expected = student(student.build_graph([atoms], min_distance=None), compute_stress=True)
    potential = load(path, allow_pickle=False)  # rebuilt from its config, then fused
    assert potential.model.config == student.config
    prediction = potential.predict(atoms, compute_stress=True)
    np.testing.assert_allclose(prediction.forces, expected["forces"].detach().numpy(), atol=1e-10)
    np.testing.assert_allclose(prediction.energy, expected["energy"].detach().numpy(), atol=1e-9)


def test_layer_kinds_are_checked_and_export_refuses_hybrids(students):
    with pytest.raises(StudentError, match="unknown"):
        StudentConfig.from_dict({**BASE, "layers": ["mace", "transformer"]})
    with pytest.raises(StudentError, match="mace layers must come before"):
        StudentConfig.from_dict({**BASE, "layers": ["attention", "mace"]})
    with pytest.raises(StudentError, match="2 kinds for 3 interactions"):
        StudentConfig.from_dict({**BASE, "layers": ["mace", "mace"], "num_interactions": 3})
    with pytest.raises(StudentError, match="multiple of attention_heads"):
        StudentConfig.from_dict({**BASE, "layers": ["attention"] * 2, "attention_heads": 3})
    config = StudentConfig.from_dict({**BASE, "layers": ["mace", "cartesian"]})
    assert StudentConfig.from_dict(config.to_dict()) == config
    with pytest.raises(StudentError, match="attention or cartesian layers"):
        export_backbone(students["hybrid"], allow_uncapped=True)
