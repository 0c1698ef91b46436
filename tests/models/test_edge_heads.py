"""Edge (pair-force) direct heads: equivariance by kind, cutoff continuity, virial stress, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate import load
from macelerate.graph.rotation import rotation_matrix
from macelerate.models.checkpoint import make_provenance
from macelerate.models.edge_heads import EdgeForceHead, edge_virial_stress
from macelerate.models.saving import save_model
from macelerate.models.student import StudentConfig, StudentError, build_student

BASE = {
    "atomic_numbers": [1, 6, 8],
    "atomic_energies": [-1.0, -2.0, -3.0],
    "channels": 8,
    "max_L": 0,
    "max_ell": 1,
    "r_max": 3.5,
    "radial_mlp": [8],
    "direct_forces": True,
    "direct_stress": True,
    "edge_head_width": 16,
}


@pytest.fixture(scope="module")
def students():
    built = {}
    for seed, (name, kind, cap) in enumerate(
        [("edge", "edge", {}), ("cartesian", "cartesian", {}),
         ("smooth", "edge", {"max_neighbors": 4, "smooth_cap": True})]
    ):  # fmt: skip
        torch.manual_seed(seed)
        built[name] = build_student({**BASE, "force_head_kind": kind, **cap})
    return built


def _crystal(seed: int = 0) -> Atoms:
    rng = np.random.default_rng(seed)
    return Atoms(
        "C3H4O", positions=rng.random((8, 3)) * 4.0, cell=np.diag([4.0, 4.1, 4.2]), pbc=True
    )


def _rotated(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    turned = atoms.copy()
    turned.positions = atoms.positions @ rotation.T
    turned.set_cell(atoms.cell.array @ rotation.T)
    return turned


def _outputs(student, atoms):
    out = student(student.build_graph([atoms], min_distance=None), compute_stress=True)
    return out["forces"].detach().numpy(), out["stress"][0].detach().numpy()


def test_edge_heads_work_on_l0_backbones_and_name_their_symmetry(students):
    assert isinstance(students["edge"].force_head, EdgeForceHead)
    assert students["edge"].config.equivariant
    assert not students["cartesian"].config.equivariant
    with pytest.raises(StudentError, match="force_head_kind='edge'"):
        StudentConfig(**{**BASE, "force_head_kind": "node"})
    with pytest.raises(StudentError, match="force_head_kind must be one of"):
        StudentConfig(**{**BASE, "force_head_kind": "pairs"})


@pytest.mark.parametrize("name", ["edge", "smooth"])
def test_edge_forces_and_virial_rotate_with_the_structure(students, name):
    atoms = _crystal()
    forces, stress = _outputs(students[name], atoms)
    rotation = rotation_matrix(np.random.default_rng(4))
    forces_r, stress_r = _outputs(students[name], _rotated(atoms, rotation))
    np.testing.assert_allclose(forces_r, forces @ rotation.T, atol=1e-10)
    np.testing.assert_allclose(stress_r, rotation @ stress @ rotation.T, atol=1e-10)
    assert np.abs(forces).max() > 1e-4 and np.abs(stress).max() > 1e-6  # not trivially zero
    np.testing.assert_allclose(forces.sum(axis=0), 0.0, atol=1e-10)  # no net force
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)


def test_cartesian_head_is_not_rotation_equivariant_but_translation_invariant(students):
    atoms = _crystal()
    forces, _ = _outputs(students["cartesian"], atoms)
    rotation = rotation_matrix(np.random.default_rng(4))
    forces_r, _ = _outputs(students["cartesian"], _rotated(atoms, rotation))
    assert np.abs(forces_r - forces @ rotation.T).max() > 1e-6
    shifted = atoms.copy()
    shifted.positions += [0.3, -0.2, 0.1]
    np.testing.assert_allclose(_outputs(students["cartesian"], shifted)[0], forces, atol=1e-10)


@pytest.mark.parametrize("cartesian", [False, True])
def test_pair_forces_vanish_continuously_at_the_cutoff(cartesian):
    torch.manual_seed(0)
    head = EdgeForceHead("4x0e", r_max=3.0, hidden=8, cartesian=cartesian).double()
    features = torch.randn(2, 4, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1], [1, 0]])
    forces = []
    for distance in (2.9, 2.99, 2.999, 3.0, 3.2):
        vectors = torch.tensor([[distance, 0.0, 0.0], [-distance, 0.0, 0.0]], dtype=torch.float64)
        forces.append(head.edge_forces(features, edge_index, vectors).abs().max().item())
    assert forces[0] > forces[1] > forces[2] > 0  # shrinking towards the cutoff
    assert forces[2] < 1e-6 * max(forces[0], 1e-12) + 1e-9 and forces[3] == forces[4] == 0.0


def test_pair_forces_are_antisymmetric_between_the_two_ends():
    torch.manual_seed(1)
    for cartesian in (False, True):
        head = EdgeForceHead("4x0e+2x1o", r_max=3.0, hidden=8, cartesian=cartesian).double()
        features = torch.randn(2, 10, dtype=torch.float64)
        edge_index = torch.tensor([[0, 1], [1, 0]])
        vector = torch.tensor([1.1, -0.4, 0.7], dtype=torch.float64)
        pair = head.edge_forces(features, edge_index, torch.stack([vector, -vector]))
        torch.testing.assert_close(pair[0], -pair[1], rtol=0, atol=1e-14)


def test_virial_of_a_pair_potential_is_its_strain_derivative():
    """For E = Σ_pairs k (r - r0)² seen from both ends, -sym(Σ v⊗f) / 2V equals dE/dε / V."""
    positions = torch.tensor(
        [[0.1, 0.2, 0.3], [1.2, 0.9, 0.1], [0.4, 1.5, 1.1]], dtype=torch.float64
    )
    cell = torch.diag(torch.tensor([6.0, 6.5, 7.0], dtype=torch.float64))
    pairs = [(0, 1), (0, 2), (1, 2)]

    def energy(strain):
        deformed = positions @ (torch.eye(3, dtype=torch.float64) + strain)
        return sum(((deformed[i] - deformed[j]).norm() - 1.0) ** 2 for i, j in pairs)

    strain = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(energy(strain), strain)
    expected = 0.5 * (gradient + gradient.T) / torch.linalg.det(cell)
    vectors, forces = [], []
    for i, j in pairs + [(j, i) for i, j in pairs]:  # every pair from both ends
        v = positions[j] - positions[i]  # r_receiver - r_sender, receiver j
        forces.append(-2.0 * (v.norm() - 1.0) * v / v.norm())
        vectors.append(v)
    stress = edge_virial_stress(
        torch.stack(vectors), torch.stack(forces), torch.zeros(6, dtype=torch.int64), cell, 1
    )
    torch.testing.assert_close(stress[0], expected, rtol=1e-12, atol=1e-14)


def test_edge_head_students_save_and_load(students, tmp_path):
    atoms = _crystal(1)
    for name, student in students.items():
        path = save_model(tmp_path / f"{name}.pt", student, provenance=make_provenance("test"))
        loaded = load(path, dtype="float64").model
        assert loaded.config.force_head_kind == student.config.force_head_kind
        # the loaded model runs macelerate's kernels (sparse contraction): equal to rounding
        np.testing.assert_allclose(
            _outputs(loaded, atoms)[0], _outputs(student, atoms)[0], rtol=0, atol=1e-12
        )


def test_potential_runs_direct_heads_without_an_autograd_graph(students):
    student = students["smooth"]
    potential = load(student, dtype="float64")
    atoms = _crystal(2)
    graph = potential.build_graph(atoms)
    grad_modes = []
    potential.model.force_head.register_forward_hook(
        lambda *_: grad_modes.append(torch.is_grad_enabled())
    )
    out = potential.forward(graph, compute_stress=True)
    assert grad_modes == [False]  # no autograd graph: nothing differentiates the energy
    expected = student(student.build_graph([atoms], min_distance=None), compute_stress=True)
    np.testing.assert_allclose(
        out["forces"].numpy(), expected["forces"].detach().numpy(), atol=1e-12
    )
    np.testing.assert_allclose(
        out["stress"].numpy(), expected["stress"].detach().numpy(), atol=1e-12
    )
