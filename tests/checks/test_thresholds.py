"""Check verdicts: limits per precision tier; a healthy model passes, broken ones fail."""

from __future__ import annotations

import math

import pytest

from macelerate.checks.suite import CheckConfig, default_structure, run_checks
from macelerate.checks.thresholds import TOLERANCES, judge, precision_tier, tolerances_for
from macelerate.models.loading import load
from tests.checks import Poisoned, Tilted

FAST = CheckConfig(n_rotations=1, gradient_samples=3, nve_steps=10, smoothness_points=21)


def test_tiers_follow_the_weakest_arithmetic(tiny_model):
    assert precision_tier(load(tiny_model)) == "float64"
    assert precision_tier(load(tiny_model, dtype="float32")) == "float32"
    assert precision_tier(load(tiny_model, precision="fp32")) == "float32"  # float64 positions
    assert precision_tier(load(tiny_model, precision="fp64")) == "float64"
    assert precision_tier(load(tiny_model, precision="bf16-linear")) == "half"
    assert tolerances_for(load(tiny_model, precision="fp32")).fd_step == 1e-2
    limits = [TOLERANCES[tier].symmetry_force_rel for tier in ("float64", "float32", "half")]
    assert limits == sorted(limits)


def test_judge_fails_nan_inf_and_missing_values():
    assert judge("c", "q", 1e-9, 1e-8, hint="h").passed
    assert judge("c", "q", -1e-9, 1e-8, hint="h").passed  # a drift may be negative
    failed = judge("c", "q", 2e-8, 1e-8, hint="the reason")
    assert not failed.passed and failed.hint == "the reason"
    for bad in (math.nan, math.inf, None):
        verdict = judge("c", "q", bad, 1e-8, hint="h")
        assert not verdict.passed and "not a finite number" in verdict.hint
    assert judge("c", "q", 1.0, 2.0, hint="h").hint == ""


@pytest.mark.parametrize("options", [{}, {"dtype": "float32"}, {"precision": "fp32"}])
def test_healthy_model_passes_every_check(tiny_model, options):
    potential = load(tiny_model, **options)
    report = run_checks(potential, default_structure(potential.atomic_numbers), config=FAST)
    assert report.passed, [(v.check, v.quantity, v.value, v.limit) for v in report.failures]
    assert len(report.verdicts) == 18  # 4 symmetry families x (E, F, σ), equigrad, FD F/σ, NVE, 2
    assert report.to_dict()["passed"] is True


def test_non_equivariant_model_fails(tiny_model):
    potential = load(Tilted(tiny_model))
    report = run_checks(potential, default_structure(potential.atomic_numbers), config=FAST)
    failed = {(v.check, v.quantity) for v in report.failures}
    assert ("rotation", "force error (rel)") in failed and ("equigrad", "||dE/dG|| (rel)") in failed
    assert ("translation", "energy error (rel)") in failed
    assert ("permutation", "energy error (rel)") not in failed  # the extra term is a sum
    assert not report.passed and report.to_dict()["passed"] is False


def test_forces_that_are_not_the_gradient_fail(tiny_model):
    potential = load(Tilted(tiny_model, strength=0.0, force_scale=1.05))
    report = run_checks(potential, default_structure(potential.atomic_numbers), config=FAST)
    (failure,) = [v for v in report.failures if v.check == "finite diff"]
    assert failure.quantity == "force error (rel)" and "negative gradient" in failure.hint


def test_nan_outputs_fail_instead_of_showing_zero(tiny_model):
    """``max(0.0, nan)`` is 0.0: the old symmetry check reported NaN energies as exact."""
    potential = load(Poisoned(tiny_model))
    report = run_checks(potential, default_structure(potential.atomic_numbers), config=FAST)
    assert math.isnan(report.symmetry.rotation.energy_abs)
    assert math.isnan(report.symmetry.max_relative)
    assert not report.passed
    failed = {v.check for v in report.failures}
    assert {"rotation", "equigrad", "finite diff", "nve", "smoothness"} <= failed
    assert report.nve is not None and report.nve.problem is not None
