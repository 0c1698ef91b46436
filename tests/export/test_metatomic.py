"""``export_metatomic``: the written model, run by metatomic-ase, equals macelerate.Calculator."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from macelerate.calculator import Calculator
from macelerate.export import ExportError, export_metatomic, export_model
from tests.export import ase_results

FORCE_TOLERANCE_FLOAT64 = 1e-6  # eV/Å


@pytest.fixture(scope="module")
def exported(tmp_path_factory, metatomic_ase, tiny_model):
    """The tiny model exported in float64, and its report."""
    out = tmp_path_factory.mktemp("metatomic") / "tiny.pt"
    return out, export_metatomic(tiny_model, out)


@pytest.mark.parametrize("structure", ["silicon", "ethanol"])
def test_metatomic_ase_equals_macelerate_in_float64(
    exported, metatomic_ase, tiny_model, structure, request
):
    path, report = exported
    assert report.agreement.max_abs_force_diff <= FORCE_TOLERANCE_FLOAT64
    assert any("no second derivatives" in change for change in report.changes)
    atoms = request.getfixturevalue(structure)
    got = ase_results(metatomic_ase.MetatomicCalculator(path, device="cpu"), atoms)
    want = ase_results(Calculator(tiny_model, dtype="float64"), atoms)
    assert abs(got["energy"] - want["energy"]) <= 1e-8
    assert np.abs(got["forces"] - want["forces"]).max() <= FORCE_TOLERANCE_FLOAT64
    assert ("stress" in want) == (structure == "silicon")
    if "stress" in want:
        assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8


def test_per_atom_energies_and_selected_atoms(exported, metatomic_ase, tiny_model, silicon):
    from metatensor.torch import Labels
    from metatomic.torch import ModelOutput

    path, _ = exported
    calculator = metatomic_ase.MetatomicCalculator(path, device="cpu")
    want = Calculator(tiny_model, dtype="float64").get_property("energies", silicon)
    got = calculator.compute_energy(silicon, per_atom=True)
    assert np.abs(got["energies"] - want).max() <= 1e-10
    chosen = [1, 4, 6]
    selected = Labels(["system", "atom"], torch.tensor([[0, i] for i in chosen], dtype=torch.int32))
    outputs = {"energy": ModelOutput(unit="eV", sample_kind="system")}
    energy = calculator.run_model(silicon, outputs, selected_atoms=selected)["energy"]
    total = float(energy.block().values.detach().sum())
    assert total == pytest.approx(want[chosen].sum(), abs=1e-10)


def test_capabilities_and_metadata(exported, metatomic_ase):
    path, _ = exported
    model = metatomic_ase.MetatomicCalculator(path, device="cpu").model()
    capabilities = model.capabilities()
    assert capabilities.atomic_types == [1, 6, 8, 14]
    assert capabilities.dtype == "float64" and capabilities.length_unit == "angstrom"
    assert capabilities.interaction_range == pytest.approx(2 * 4.0)  # 2 layers x r_max
    assert list(capabilities.outputs) == ["energy"]
    [neighbors] = model.requested_neighbor_lists()
    assert neighbors.cutoff == pytest.approx(4.0) and neighbors.full_list and neighbors.strict


def test_float32_export(tmp_path, metatomic_ase, tiny_model, silicon):
    out = tmp_path / "tiny32.pt"
    report = export_metatomic(tiny_model, out, dtype="float32")
    assert report.dtype == "float32" and report.agreement.max_abs_force_diff <= 1e-4
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu")
    assert calculator.model().capabilities().dtype == "float32"


def test_direct_heads_as_non_conservative_outputs(tmp_path, metatomic_ase, students, silicon):
    student = students["direct"]
    out = tmp_path / "direct.pt"
    report = export_metatomic(student, out)
    assert report.agreement.max_abs_force_diff <= FORCE_TOLERANCE_FLOAT64
    assert any("non_conservative" in change for change in report.changes)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu", non_conservative=True)
    outputs = calculator.model().capabilities().outputs
    assert {"energy", "non_conservative_force", "non_conservative_stress"} <= set(outputs)
    got = ase_results(calculator, silicon)
    want = ase_results(Calculator(student, dtype="float64"), silicon)
    assert np.abs(got["forces"] - want["forces"]).max() <= FORCE_TOLERANCE_FLOAT64
    assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8


def test_confidence_head_as_a_per_atom_output(tmp_path, metatomic_ase, students, silicon):
    from metatomic.torch import ModelOutput

    student = students["direct"]  # direct heads and a confidence head
    out = tmp_path / "direct.pt"
    report = export_metatomic(student, out)
    assert any("macelerate::force_confidence" in change for change in report.changes)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu", non_conservative=True)
    request = {"macelerate::force_confidence": ModelOutput(unit="eV/Angstrom", sample_kind="atom")}
    block = calculator.run_model(silicon, request)["macelerate::force_confidence"].block()
    got = block.values.detach().numpy().reshape(-1)
    want = Calculator(student, dtype="float64").get_property("force_confidence", silicon)
    assert got.shape == (len(silicon),) and (got > 0).all()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["edge", "cartesian"])
def test_edge_heads_as_non_conservative_outputs(tmp_path, metatomic_ase, students, name, silicon):
    student = students[name]
    out = tmp_path / f"{name}.pt"
    report = export_metatomic(student, out)
    assert report.agreement.max_abs_force_diff <= FORCE_TOLERANCE_FLOAT64
    mode = "forces" if name == "cartesian" else True  # the cartesian student has no stress head
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu", non_conservative=mode)
    outputs = set(calculator.model().capabilities().outputs)
    assert ("non_conservative_stress" in outputs) == (name == "edge")
    got = ase_results(calculator, silicon)
    want = ase_results(Calculator(student, dtype="float64"), silicon)
    assert np.abs(got["forces"] - want["forces"]).max() <= FORCE_TOLERANCE_FLOAT64
    assert np.abs(got["forces"]).max() > 1e-6  # pair forces, not an empty output
    if name == "edge":
        assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8


@pytest.mark.parametrize("name", ["hybrid", "cartesian_layer"])
def test_hybrid_students_run_their_layers_inside_the_export(
    tmp_path, metatomic_ase, students, name, silicon, ethanol
):
    student = students[name]
    out = tmp_path / f"{name}.pt"
    report = export_metatomic(student, out)
    kinds = "/".join(student.config.layer_kinds)
    assert any(f"layers {kinds} compiled" in change for change in report.changes)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu")
    for atoms in (silicon, ethanol):
        got = ase_results(calculator, atoms)
        want = ase_results(Calculator(student, dtype="float64"), atoms)
        assert abs(got["energy"] - want["energy"]) <= 1e-8
        assert np.abs(got["forces"] - want["forces"]).max() <= FORCE_TOLERANCE_FLOAT64
    with pytest.raises(ExportError, match="plain mace-torch"):  # a mace file cannot hold them
        export_model(student, tmp_path / f"{name}.model", format="mace")


def test_hard_capped_students_are_refused(tmp_path, metatomic_ase, students):
    with pytest.raises(ExportError, match="capped at 3 neighbours.*allow_uncapped"):
        export_metatomic(students["capped"], tmp_path / "capped.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("structure", ["silicon", "ethanol"])
def test_smooth_cap_runs_inside_the_exported_model(
    tmp_path, metatomic_ase, students, structure, request
):
    student = students["smooth"]
    out = tmp_path / "smooth.pt"
    report = export_metatomic(student, out)
    assert report.agreement.max_abs_force_diff <= FORCE_TOLERANCE_FLOAT64
    assert any("smooth neighbour cap of 3" in change for change in report.changes)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu")
    reach = 4.0 + 2 * student.config.cap_width  # thresholds count neighbours to r_max + 2δ
    [neighbors] = calculator.model().requested_neighbor_lists()
    assert neighbors.cutoff == pytest.approx(reach)
    assert calculator.model().capabilities().interaction_range == pytest.approx(2 * reach)
    atoms = request.getfixturevalue(structure)
    receivers = student.build_graph(atoms, min_distance=None)["edge_index"][1]
    assert torch.bincount(receivers).max() > 3  # the cap acts on this structure
    got = ase_results(calculator, atoms)
    want = ase_results(Calculator(student, dtype="float64"), atoms)
    assert abs(got["energy"] - want["energy"]) <= 1e-8
    assert np.abs(got["forces"] - want["forces"]).max() <= FORCE_TOLERANCE_FLOAT64
    if "stress" in want:
        assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8


def test_missing_metatomic_is_one_clear_error(tmp_path, monkeypatch, tiny_model):
    real = importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "metatomic_ase" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ExportError, match="needs metatomic-ase: pip install metatomic-torch"):
        export_metatomic(tiny_model, tmp_path / "x.pt")


@pytest.mark.slow
@pytest.mark.needs_shared_data
@pytest.mark.parametrize(
    "model", ["go_mace_tutorial/GO_full_MACE_swa.model", "gst_mace_pr325/mace_swa.model"]
)
def test_real_models(tmp_path, metatomic_ase, shared_data, model):
    report = export_metatomic(shared_data / "models" / model, tmp_path / "real.pt")
    assert report.agreement.max_abs_force_diff <= FORCE_TOLERANCE_FLOAT64
    assert report.agreement.max_abs_stress_diff <= 1e-8
