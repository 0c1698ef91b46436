"""The check suite: the built-in structure and one report with every check's numbers."""

from __future__ import annotations

import json

import numpy as np

from macelerate.checks.suite import CheckConfig, default_structure, run_checks
from macelerate.models.loading import load

FAST = CheckConfig(n_rotations=1, gradient_samples=2, nve_steps=3, smoothness_points=11)


def test_default_structure_uses_the_model_elements():
    atoms = default_structure([1, 6, 8, 14], seed=2)
    assert len(atoms) == 8 and atoms.pbc.all()
    assert sorted(set(atoms.numbers)) == [1, 6, 8, 14]
    distances = atoms.get_all_distances(mic=True)[~np.eye(8, dtype=bool)]
    assert distances.min() > 1.2
    assert len(default_structure(list(range(1, 12)))) == 27
    assert np.array_equal(
        default_structure([6], seed=2).positions, default_structure([6], seed=2).positions
    )


def test_run_checks_reports_every_check(tiny_model):
    potential = load(tiny_model)
    report = run_checks(potential, default_structure(potential.atomic_numbers), config=FAST)
    assert report.symmetry.max_relative < 1e-10
    assert report.equigrad.norm < 1e-10
    assert report.gradients.force_rel < 1e-6
    assert report.nve is not None and report.nve.steps == 3
    assert report.smoothness.n_points == 11 and report.periodic
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["symmetry"]["max_relative"] < 1e-10 and payload["config"]["nve_steps"] == 3
    rows = report.rows()
    assert ("nve", "drift") in {(check, quantity) for check, quantity, _, _ in rows}
    assert all(value is not None for _, _, value, _ in rows)
