"""``macelerate check``: a table on stdout and the JSON report."""

from __future__ import annotations

import json

import pytest
from ase.io import write

from macelerate.cli.__main__ import main


def test_check_built_in_structure_writes_json(tiny_model_file, tmp_path, capsys):
    out = tmp_path / "check.json"
    assert main(["check", str(tiny_model_file), "--nve-steps", "0", "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "built-in: 8 atoms, float64" in table and "energy error (rel)" in table
    assert "nve" not in table
    report = json.loads(out.read_text())
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
