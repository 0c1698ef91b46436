"""Conformance checks: a conforming model passes, each broken wrapper fails its own verdict."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate import Calculator, load
from macelerate.checks import ConformanceConfig, check_potential, default_structures
from macelerate.checks.suite import CheckConfig, default_structure, run_checks
from macelerate.cli.__main__ import main
from macelerate.models.potential import Potential
from macelerate.models.student import StudentConfig, build_student
from tests.checks import Poisoned

QUICK = ConformanceConfig(finite_differences=False, symmetry=False)
"""Batch, inputs, calculator and outputs only: the checks the broken wrappers target."""


@pytest.fixture(scope="module")
def potential(tiny_model) -> Potential:
    return load(tiny_model)


def _wrapped(kind: type[Potential], potential: Potential) -> Potential:
    """``potential``'s model behind a (broken) Potential subclass."""
    return kind(potential.model, precision=potential.precision)


def _failed(report) -> set[tuple[str, str]]:
    return {(verdict.check, verdict.quantity) for verdict in report.failures}


class BatchDependent(Potential):
    """Energies shift by 1 meV per other structure in the batch."""

    def forward(self, graph, **options):
        out = super().forward(graph, **options)
        out["energy"] = out["energy"] + 1e-3 * (len(out["energy"]) - 1)
        return out


class Mutating(Potential):
    """Moves the graph's positions after the forward pass and tags the Atoms it predicts."""

    def forward(self, graph, **options):
        out = super().forward(graph, **options)
        graph["positions"].add_(1e-9)
        return out

    def predict(self, atoms_or_list, **options):
        for atoms in [atoms_or_list] if isinstance(atoms_or_list, Atoms) else atoms_or_list:
            atoms.info["seen"] = True
        return super().predict(atoms_or_list, **options)


class NotConservative(Potential):
    """Forces 10 % larger than -∇E."""

    def forward(self, graph, **options):
        out = super().forward(graph, **options)
        if "forces" in out:
            out["forces"] = 1.1 * out["forces"]
        return out


class Misshapen(Potential):
    """Energies of shape [n_graphs, 1] instead of [n_graphs]."""

    def forward(self, graph, **options):
        out = super().forward(graph, **options)
        out["energy"] = out["energy"][:, None]
        return out


class ShiftedCalculator(Calculator):
    """Adds 0.1 eV/Å to every force after the model ran."""

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        self.results["forces"] = self.results["forces"] + 0.1


class MovingCalculator(Calculator):
    """Rattles the positions of the Atoms it is given."""

    def calculate(self, atoms=None, properties=None, system_changes=None):
        super().calculate(atoms, properties, system_changes or [])
        if atoms is not None:
            atoms.positions[0] += 1e-6


def test_default_structures_are_different_and_made_of_the_model_elements():
    structures = default_structures([1, 6, 8, 14], seed=3)
    assert [len(atoms) for atoms in structures] == [8, 6, 5]
    assert [bool(atoms.pbc.all()) for atoms in structures] == [True, True, False]
    assert set(np.concatenate([atoms.numbers for atoms in structures])) <= {1, 6, 8, 14}
    assert structures[0].info["structure"] == "periodic cell"
    assert np.array_equal(
        structures[0].positions, default_structure([1, 6, 8, 14], seed=3).positions
    )


def test_conforming_model_passes_every_verdict(potential):
    structures = default_structures(potential.atomic_numbers, seed=1)
    copies = [atoms.copy() for atoms in structures]
    report = check_potential(potential, structures, config=ConformanceConfig(gradient_samples=2))
    assert report.passed, report.failures
    judged = {(verdict.check, verdict.quantity) for verdict in report.verdicts}
    assert {
        ("batch", "|ΔE|/atom vs single"), ("batch", "|Δσ| vs single"),
        ("calculator", "|ΔF| vs model"), ("inputs", "fields changed"),
        ("outputs", "shape/dtype errors"), ("outputs", "non-finite values"),
        ("finite diff", "force error (rel)"), ("finite diff", "stress error (rel)"),
        ("translation", "force error (rel)"), ("permutation", "energy error (rel)"),
    } <= judged  # fmt: skip
    assert len(judged) == len(report.verdicts)  # the worst over structures, once each
    assert report.batch.force < 1e-12 and report.calculator.energy_per_atom == 0.0
    assert report.changed_inputs == () and report.output_errors == () and report.non_finite == 0
    assert len(report.gradients) == 3 and len(report.symmetry) == 3 and report.skipped == ()
    assert report.structures == ("periodic cell", "smaller cell", "cluster")
    for atoms, copy in zip(structures, copies):  # the caller's structures are never touched
        assert np.array_equal(atoms.positions, copy.positions) and atoms.info == copy.info
        assert atoms.calc is None
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["passed"] is True and payload["tolerances"]["tier"] == "float64"


def test_a_calculator_is_checked_as_given(potential):
    report = check_potential(ShiftedCalculator(potential), config=QUICK)
    assert _failed(report) == {("calculator", "|ΔF| vs model")}
    assert report.calculator.force == pytest.approx(0.1 * np.sqrt(3))
    assert "Calculator does not return the model's prediction" in report.failures[0].hint


def test_a_calculator_moving_atoms_fails_inputs(potential):
    report = check_potential(MovingCalculator(potential), config=QUICK)
    assert ("inputs", "fields changed") in _failed(report)
    assert "Calculator, structure 0: positions" in report.changed_inputs
    assert not any(name.startswith("Potential") for name in report.changed_inputs)


def test_a_model_changing_its_inputs_fails_inputs(potential):
    report = check_potential(_wrapped(Mutating, potential), config=QUICK)
    assert ("inputs", "fields changed") in _failed(report)
    assert "Potential.forward: graph['positions']" in report.changed_inputs
    assert "Potential.predict, structure 2: info" in report.changed_inputs
    hint = next(verdict.hint for verdict in report.failures if verdict.check == "inputs")
    assert hint.startswith("prediction changed its inputs: ")


def test_batch_dependent_results_fail_batch(potential):
    report = check_potential(_wrapped(BatchDependent, potential), config=QUICK)
    assert _failed(report) == {("batch", "|ΔE|/atom vs single")}
    assert report.batch.energy_per_atom == pytest.approx(2e-3 / 5)  # the 5-atom cluster


def test_forces_that_are_not_the_energy_gradient_fail_finite_differences(potential):
    config = ConformanceConfig(gradient_samples=2, symmetry=False)
    structures = default_structures(potential.atomic_numbers)[1:]  # a cell and a cluster
    report = check_potential(_wrapped(NotConservative, potential), structures, config=config)
    assert _failed(report) == {("finite diff", "force error (rel)")}


def test_wrong_shapes_and_nan_fail_outputs(potential, tiny_model):
    report = check_potential(_wrapped(Misshapen, potential), config=QUICK)
    assert ("outputs", "shape/dtype errors") in _failed(report)
    assert any("energy of shape [3, 1], expected [3]" in e for e in report.output_errors)
    poisoned = check_potential(load(Poisoned(tiny_model)), config=QUICK)
    assert ("outputs", "non-finite values") in _failed(poisoned)
    assert poisoned.non_finite > 0


def test_direct_force_students_skip_the_gradient_comparison_with_a_reason():
    config = StudentConfig(
        atomic_numbers=(1, 6, 8, 14), atomic_energies=(-1.0, -2.0, -3.0, -4.0), channels=8,
        max_L=1, max_ell=2, r_max=4.0, radial_mlp=(8, 8), direct_forces=True,
    )  # fmt: skip
    torch.manual_seed(0)
    potential = load(build_student(config))
    structures = default_structures(potential.atomic_numbers)[1:]  # a cell and a cluster
    settings = ConformanceConfig(gradient_samples=2, symmetry=False)
    report = check_potential(potential, structures, config=settings)
    assert [(s.check, s.quantity) for s in report.skipped] == [("finite diff", "force error (rel)")]
    assert "direct-force head" in report.skipped[0].reason
    judged = {(verdict.check, verdict.quantity) for verdict in report.verdicts}
    assert ("finite diff", "force error (rel)") not in judged
    assert ("finite diff", "stress error (rel)") in judged  # the stress is still dE/dε
    assert report.passed, report.failures


def test_bad_arguments_are_one_clear_error(potential, tiny_model, silicon):
    with pytest.raises(TypeError, match="Potential or Calculator.*macelerate.load"):
        check_potential(tiny_model)
    with pytest.raises(TypeError, match="list of ase.Atoms"):
        check_potential(potential, silicon)
    with pytest.raises(ValueError, match="at least two different structures, got 1"):
        check_potential(potential, [silicon])


def test_run_checks_includes_the_uncovered_conformance_rows(potential):
    fast = CheckConfig(n_rotations=1, gradient_samples=2, nve_steps=0, smoothness_points=11)
    atoms = default_structure(potential.atomic_numbers)
    report = run_checks(potential, atoms, config=replace(fast, conformance=True))
    assert report.conformance is not None and report.passed
    checks = {check for check, _, _, _ in report.conformance.rows()}
    assert checks == {"batch", "calculator", "inputs", "outputs"}  # the rest are run_checks'
    assert set(report.conformance.verdicts) <= set(report.verdicts)
    assert report.to_dict()["conformance"]["passed"] is True
    off = run_checks(potential, atoms, config=fast)  # off by default in the library
    assert off.conformance is None and len(off.verdicts) == len(report.verdicts) - 9


def test_check_cli_prints_the_conformance_rows(tiny_model_file, capsys):
    args = ["check", str(tiny_model_file), "--nve-steps", "0", "--conformance", "--no-progress"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "batch        |ΔF| vs single" in table and "calculator   |Δσ| vs model" in table
    assert "inputs       fields changed" in table and "overall: PASS" in table
