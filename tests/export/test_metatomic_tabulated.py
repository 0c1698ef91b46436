"""Metatomic exports with the tabulated radial lever inside (``radial="tabulated"``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from macelerate import load
from macelerate.calculator import Calculator
from macelerate.cli import main
from macelerate.export import ExportError, export_metatomic
from macelerate.export._metatomic_radial import ScriptableEdgeFeatures, ScriptableRadialTable
from macelerate.transforms.tabulate import tabulated_model
from tests.export import ase_results


@pytest.fixture(scope="module")
def exported(tmp_path_factory, metatomic_ase, tiny_model):
    out = tmp_path_factory.mktemp("tabulated") / "tiny_tabulated.pt"
    return out, export_metatomic(tiny_model, out, radial="tabulated")


def test_the_scripted_table_is_the_levers_table(tiny_model):
    """Values and length derivatives equal the runtime's kernel, below, inside and beyond the
    table, compiled by TorchScript."""
    model, tables = tabulated_model(tiny_model, n_knots=64, r_min=0.5)
    table = tables[1]
    scripted = torch.jit.script(
        ScriptableRadialTable(table, ScriptableEdgeFeatures(model.radial_embedding.inner))
    )
    lengths = torch.tensor([0.0, 0.3, 0.5, 0.77, 1.6, 2.9, 4.0, 4.3], dtype=torch.float64)
    lengths = lengths.unsqueeze(-1).requires_grad_(True)
    want = table(lengths)
    got = scripted(lengths)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    weights = torch.randn_like(want)
    (grad_want,) = torch.autograd.grad((want * weights).sum(), lengths)
    (grad_got,) = torch.autograd.grad((got * weights).sum(), lengths)
    torch.testing.assert_close(grad_got, grad_want, atol=1e-10, rtol=0)
    assert bool((grad_got[1:] != 0).any())


@pytest.mark.parametrize("structure", ["silicon", "ethanol"])
def test_metatomic_ase_equals_the_tabulated_lever(
    exported, metatomic_ase, tiny_model, structure, request
):
    path, report = exported
    assert any("cubic tables" in change for change in report.changes)
    assert report.agreement.max_abs_force_diff <= 1e-8
    atoms = request.getfixturevalue(structure)
    got = ase_results(metatomic_ase.MetatomicCalculator(path, device="cpu"), atoms)
    lever = load(tiny_model, dtype="float64", radial="tabulated")
    tabulated = ase_results(Calculator(lever), atoms)
    exact = ase_results(Calculator(tiny_model, dtype="float64"), atoms)
    assert abs(got["energy"] - tabulated["energy"]) <= 1e-8
    assert np.abs(got["forces"] - tabulated["forces"]).max() <= 1e-8
    table_error = np.abs(got["forces"] - exact["forces"]).max()
    assert 0 < table_error <= 1e-5  # the tables are inside, and close to the MLPs
    if "stress" in tabulated:
        assert np.abs(got["stress"] - tabulated["stress"]).max() <= 1e-8


@pytest.mark.parametrize("name", ["direct", "smooth", "edge"])
def test_students_export_tabulated(tmp_path, metatomic_ase, students, name, silicon, ethanol):
    """Direct heads, and a smooth cap, whose weights multiply the tables' output as in the
    runtime: the file equals macelerate's tabulated student."""
    student = students[name]
    out = tmp_path / f"{name}.pt"
    report = export_metatomic(student, out, radial="tabulated")
    assert report.agreement.max_abs_force_diff <= 1e-8
    assert any("cubic tables" in change for change in report.changes)
    if name == "direct":
        return
    assert any("smooth neighbour cap" in change for change in report.changes)
    direct = "forces" if name == "edge" else False
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu", non_conservative=direct)
    lever = Calculator(load(student, dtype="float64", radial="tabulated"))
    for atoms in (silicon, ethanol):
        got, want = ase_results(calculator, atoms), ase_results(lever, atoms)
        assert np.abs(got["forces"] - want["forces"]).max() <= 1e-8


def test_refused_where_the_tables_cannot_go(tmp_path, metatomic_ase, students, tiny_model_file):
    with pytest.raises(ExportError, match="cannot tabulate"):  # a layer without a radial MLP
        export_metatomic(students["cartesian_layer"], tmp_path / "c.pt", radial="tabulated")
    with pytest.raises(ExportError, match="radial must be one of"):
        export_metatomic(students["direct"], tmp_path / "x.pt", radial="chebyshev")
    assert list(tmp_path.iterdir()) == []
    args = ["export", str(tiny_model_file), "--format", "mace", "--out", str(tmp_path / "m.model")]
    assert main([*args, "--radial", "tabulated"]) == 2  # mace files hold the MLPs
    assert list(tmp_path.iterdir()) == []


def test_a_float32_file_gets_float64_tables(tmp_path, metatomic_ase, tiny_model, silicon):
    """Tables are built from float64 weights: exported in float64, a float32 model agrees with
    macelerate's float64 tabulated potential to rounding, not to float32's 1e-7."""
    single = copy.deepcopy(tiny_model).to(torch.float32)  # the fixture stays float64
    report = export_metatomic(single, tmp_path / "single.pt", radial="tabulated")
    assert report.agreement.max_abs_force_diff <= 1e-12


def test_tables_of_dead_paths_are_left_out(tmp_path, metatomic_ase, silicon):
    """A removed convolution path's table columns are not computed; the file still equals the
    tabulated lever."""
    from macelerate.compress.paths import conv_paths, remove_conv_paths
    from macelerate.export._metatomic_conv import fuse_for_export
    from macelerate.export._metatomic_radial import scriptable_tabulated
    from macelerate.testing import tiny_mace

    model = tiny_mace([1, 6, 8, 14], channels=8, max_L=1, max_ell=2, seed=5)
    path = next(p for p in conv_paths(model) if p.layer == 1 and p.width > 8)
    model = remove_conv_paths(model, [path])
    backbone, _ = tabulated_model(copy.deepcopy(model), n_knots=64, r_min=0.5)
    backbone = scriptable_tabulated(backbone)
    widths = [block.conv_tp_weights.table.shape[1] for block in backbone.interactions]
    fuse_for_export(backbone)
    narrowed = [block.conv_tp_weights.table.shape[1] for block in backbone.interactions]
    assert narrowed[1] < widths[1] and narrowed[0] == widths[0]
    out = tmp_path / "dead.pt"
    export_metatomic(model, out, radial="tabulated")
    got = ase_results(metatomic_ase.MetatomicCalculator(out, device="cpu"), silicon)
    want = ase_results(Calculator(load(model, dtype="float64", radial="tabulated")), silicon)
    assert abs(got["energy"] - want["energy"]) <= 1e-8
    assert np.abs(got["forces"] - want["forces"]).max() <= 1e-8
