"""The check limits on a real model (GST, ../shared/data): healthy in float64 and float32.

The limits of :mod:`macelerate.checks.thresholds` were set from real models; this keeps them
honest: the real GST model must pass in every tier it is meant to.
"""

from __future__ import annotations

import pytest

from macelerate.checks.suite import CheckConfig, run_checks

pytestmark = [pytest.mark.slow, pytest.mark.needs_shared_data]

QUICK = CheckConfig(n_rotations=1, gradient_samples=4, nve_steps=20, smoothness_points=41)


OPTIONS = {"float64": {"dtype": "float64"}, "float32": {"dtype": "float32"},
           "fp32": {"precision": "fp32"}}  # fmt: skip


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_gst_passes_every_check(shared_data, options):
    import ase.io

    import macelerate

    potential = macelerate.load(shared_data / "models/gst_mace_pr325/mace_swa.model", **options)
    atoms = ase.io.read(shared_data / "gst_mace_pr325/validate.xyz", 0)
    report = run_checks(potential, atoms, config=QUICK)
    assert report.passed, [(v.check, v.quantity, v.value, v.limit) for v in report.failures]
