"""``macelerate export``: one line on success, one error line on bad input."""

from __future__ import annotations

import json

import pytest

from macelerate.cli.__main__ import main


def test_export_mace_prints_one_line(tmp_path, tiny_model_file, capsys):
    out = tmp_path / "out.model"
    report = tmp_path / "report.json"
    args = ["export", str(tiny_model_file), "--format", "mace", "--out", str(out),
            "--json", str(report)]  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out} (mace, float64)")
    assert "max |ΔE|" in lines[0] and "max |ΔF|" in lines[0]
    assert out.is_file()
    assert json.loads(report.read_text())["agreement"]["max_abs_force_diff"] <= 1e-12


def test_export_metatomic(tmp_path, tiny_model_file, capsys):
    pytest.importorskip("metatomic_ase", reason="metatomic-ase is not installed")
    out = tmp_path / "out.pt"
    assert main(["export", str(tiny_model_file), "--format", "metatomic", "--out", str(out)]) == 0
    assert "metatomic-ase vs macelerate" in capsys.readouterr().out
    assert out.is_file()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--format", "xyz"], "unknown export format 'xyz'; choose one of"),
        (["--format", "mace", "--head", "x"], "--head applies to metatomic exports"),
    ],
)
def test_bad_options_are_one_error_line(tmp_path, tiny_model_file, capsys, args, message):
    out = tmp_path / "out.model"
    assert main(["export", str(tiny_model_file), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("macelerate export: error: ") and message in err[0]
    assert not out.exists()


def test_missing_model_file_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "missing.model"
    assert main(["export", str(missing), "--format", "mace", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
