"""``macelerate check``: a table on stdout and the JSON report."""

from __future__ import annotations

import json

import pytest
from ase.io import write

from macelerate.cli.__main__ import main
from tests.checks import Poisoned, Tilted


def test_check_built_in_structure_writes_json(tiny_model_file, tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["check", str(tiny_model_file), "--nve-steps", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "built-in: 8 atoms, float64" in table and "energy error (rel)" in table
    assert "nve" not in table
    assert "overall: PASS" in table and "FAIL" not in table
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["tolerances"]["tier"] == "float64"
    assert all(verdict["passed"] for verdict in report["verdicts"])
    assert {"check", "quantity", "value", "limit", "unit", "passed", "hint"} == set(
        report["verdicts"][0]
    )
    assert report["schema"] == "macelerate-check/1" and report["model_label"] == "tiny"
    assert report["symmetry"]["max_relative"] < 1e-10 and report["nve"] is None
    assert report["gradients"]["force_rel"] < 1e-6 and report["equigrad"]["norm"] < 1e-10


def test_check_given_molecule_with_nve(tiny_model_file, tmp_path, ethanol, capsys):
    structure = tmp_path / "ethanol.xyz"
    write(structure, ethanol)
    args = ["check", str(tiny_model_file), "--structure", str(structure), "--nve-steps", "2",
            "--seed", "1"]  # fmt: skip
    assert main(args) == 0
    table = capsys.readouterr().out
    assert f"file:{structure}: 9 atoms" in table and "meV/atom/ps" in table
    assert "stress" not in table  # a molecule has no stress


def test_check_rejects_one_nve_step(tiny_model_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(tiny_model_file), "--nve-steps", "1"])
    assert exit_info.value.code == 2 and "at least 2" in capsys.readouterr().err


def test_check_missing_structure_is_one_clear_error(tiny_model_file, tmp_path, capsys):
    assert main(["check", str(tiny_model_file), "--structure", str(tmp_path / "no.xyz")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_nan_model_fails_with_exit_status_1(tiny_model, monkeypatch, tmp_path, capsys):
    from macelerate.cli import check
    from macelerate.models.loading import load

    monkeypatch.setattr(check, "load_from_args", lambda args: load(Poisoned(tiny_model)))
    out = tmp_path / "check.json"
    args = ["check", "nan.model", "--nve-steps", "4", "--json", str(out), "--no-progress"]
    assert main(args) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("rotation     energy error "))
    assert "nan" in row and "0.000e+00" not in row  # max(0.0, nan) used to print 0
    assert "overall: FAIL" in table and "not a finite number" in table
    assert json.loads(out.read_text())["passed"] is False


def test_non_equivariant_model_fails_with_exit_status_1(tiny_model, monkeypatch, capsys):
    from macelerate.cli import check
    from macelerate.models.loading import load

    monkeypatch.setattr(check, "load_from_args", lambda args: load(Tilted(tiny_model)))
    assert main(["check", "tilted.model", "--nve-steps", "0", "--no-progress"]) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("rotation     force"))
    assert row.endswith("FAIL") and "<= 1.000e-06" in row
    assert "FAIL rotation force error (rel)" in table and "not rotation-equivariant" in table


def test_check_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = capsys.readouterr().out
    assert "1  a check failed" in text and "2  bad input" in text
    assert "(default: 50)" in text and "(default: 0.5)" in text


def test_check_shows_progress_on_stderr(tiny_model_file, capsys):
    assert main(["check", str(tiny_model_file), "--nve-steps", "0"]) == 0
    assert "checks:" in capsys.readouterr().err
