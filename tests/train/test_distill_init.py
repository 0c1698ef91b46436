"""Starting a student from a trained one: same backbone weights, new heads fresh."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from ase.build import molecule

from macelerate.models.student import StudentConfig, StudentError, build_student
from macelerate.train.distill import student_from_init

BASE = StudentConfig(
    atomic_numbers=(1, 6, 8), atomic_energies=(-1.0, -2.0, -3.0), channels=8, max_L=0,
    max_ell=1, r_max=3.5, radial_mlp=(8,), confidence_head=True,
)  # fmt: skip


def test_a_direct_head_starts_on_the_trained_backbone():
    torch.manual_seed(0)
    source = build_student(BASE)
    config = replace(BASE, direct_forces=True, force_head_kind="edge", edge_head_width=8)
    student, report = student_from_init(config, source)
    assert report["fresh_parts"] == ["force_head"] and report["copied_tensors"] > 0
    for name, tensor in source.state_dict().items():
        torch.testing.assert_close(student.state_dict()[name], tensor, rtol=0, atol=0)
    ethanol = molecule("CH3CH2OH")
    energy = student(student.build_graph([ethanol]), compute_force=False)["energy"]
    expected = source(source.build_graph([ethanol]), compute_force=False)["energy"]
    torch.testing.assert_close(energy, expected, rtol=0, atol=0)  # the same backbone function


def test_another_backbone_is_refused_with_the_fix():
    source = build_student(BASE)
    with pytest.raises(StudentError, match="another backbone"):
        student_from_init(replace(BASE, channels=16), source)
