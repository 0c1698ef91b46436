"""Students through load, Potential and Calculator: caps at inference, confidence, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk

from macelerate import Calculator, load
from macelerate.models.checkpoint import make_provenance
from macelerate.models.student import StudentConfig, build_student, save_student


def _student(**options):
    config = StudentConfig(
        atomic_numbers=(1, 6, 8, 14), atomic_energies=(-1.0, -2.0, -3.0, -4.0), channels=8,
        max_L=1, max_ell=2, r_max=4.0, radial_mlp=(8, 8), **options,
    )  # fmt: skip
    torch.manual_seed(0)
    return build_student(config)


@pytest.fixture
def silicon_cell():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, rng=np.random.default_rng(2))
    return atoms


def test_saved_student_loads_with_its_hard_cap_and_confidence(tmp_path, silicon_cell):
    student = _student(max_neighbors=6, confidence_head=True, direct_forces=True)
    path = save_student(tmp_path / "student.pt", student, make_provenance("test"))
    potential = load(path, allow_pickle=False)
    graph = potential.build_graph(silicon_cell)
    in_degree = torch.bincount(graph["edge_index"][1], minlength=len(silicon_cell))
    assert int(in_degree.max()) <= 6  # the student's own cap, without asking for it
    expected = student(student.build_graph(silicon_cell))
    out = potential.forward(graph)
    torch.testing.assert_close(out["energy"], expected["energy"].detach())
    torch.testing.assert_close(out["forces"], expected["forces"].detach())
    silicon_cell.calc = Calculator(potential)
    confidence = silicon_cell.calc.get_property("force_confidence", silicon_cell)
    assert confidence.shape == (len(silicon_cell),) and (confidence >= 0).all()


def test_smooth_capped_student_matches_its_own_graph(tmp_path, silicon_cell):
    student = _student(max_neighbors=6, smooth_cap=True)
    path = save_student(tmp_path / "smooth.pt", student, make_provenance("test"))
    potential = load(path)
    expected = student(student.build_graph(silicon_cell))
    out = potential.forward(potential.build_graph(silicon_cell))
    torch.testing.assert_close(out["forces"], expected["forces"].detach())


def test_models_without_confidence_refuse_the_property(tiny_model, ethanol):
    from ase.calculators.calculator import PropertyNotImplementedError

    ethanol.calc = Calculator(tiny_model)
    with pytest.raises(PropertyNotImplementedError, match="confidence head"):
        ethanol.calc.get_property("force_confidence", ethanol)


def test_precision_policy_applies_to_a_student_backbone(silicon_cell):
    student = _student(max_neighbors=8)
    reference = load(student)
    fast = load(student, precision="bf16-linear")
    assert fast.precision is not None and fast.fused_blocks == 2
    a, b = reference.predict(silicon_cell), fast.predict(silicon_cell)
    scale = np.sqrt(np.mean(a.forces**2))
    assert np.sqrt(np.mean((a.forces - b.forces) ** 2)) < 0.05 * scale
