"""``describe`` and ``macelerate info``: plain models, the shipped student and tiny students."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from macelerate.cli.__main__ import main
from macelerate.demo import __file__ as demo_init
from macelerate.models.info import STUDENT_FIELDS, describe
from macelerate.models.loading import load
from macelerate.models.student import build_student

DEMO = Path(demo_init).parent


def test_shipped_student_is_described(capsys):
    facts = describe(load(DEMO / "go_small_student.pt", dtype=None))
    assert facts["model_class"] == "Student" and facts["elements"] == ["H", "C", "O"]
    assert facts["num_interactions"] == 2 and facts["hidden_irreps"] == "8x0e+8x1o"
    assert facts["channels"] == 8 and facts["max_L"] == 1 and facts["correlation"] == 2
    assert facts["student"]["max_neighbors"] == 12 and facts["student"]["confidence_head"] is False
    assert set(facts["student"]) == set(STUDENT_FIELDS)
    assert main(["info", str(DEMO / "go_small_student.pt")]) == 0
    table = capsys.readouterr().out
    assert "student.max_neighbors" in table and "num_interactions" in table
    assert main(["info", str(DEMO / "go_small_student.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["student"]["max_neighbors"] == 12


def test_tiny_student_with_heads_is_described():
    torch.manual_seed(0)
    student = build_student(
        {
            "atomic_numbers": [1, 8], "atomic_energies": [-1.0, -2.0], "channels": 4,
            "max_ell": 1, "r_max": 3.5, "radial_mlp": [8], "head_channels": 4,
            "max_neighbors": 4, "smooth_cap": True, "direct_forces": True,
            "confidence_head": True, "confidence_bins": 10,
        }
    )  # fmt: skip
    facts = describe(load(student))
    extras = facts["student"]
    assert extras["smooth_cap"] and extras["direct_forces"] and extras["confidence_head"]
    assert extras["confidence_bins"] == 10 and not extras["direct_stress"]
    assert facts["channels"] == 4 and facts["num_interactions"] == 2
    assert facts["num_parameters"] == sum(p.numel() for p in student.parameters())


@pytest.mark.parametrize("name", ["go_small.pt", "go_small_pruned.pt"])
def test_shipped_plain_models_are_described(name):
    facts = describe(load(DEMO / name, dtype=None))
    assert "student" not in facts and facts["num_interactions"] == 2
    assert facts["hidden_irreps"] is not None
