"""``--precision`` in eval, check, md, demo and bench."""

from __future__ import annotations

import json

from ase.io import write

from macelerate.cli.__main__ import main


def test_eval_and_check_take_a_precision(tiny_model_file, ethanol, tmp_path, capsys):
    data = tmp_path / "eth.xyz"
    write(data, ethanol)
    out = tmp_path / "eval.json"
    args = ["eval", str(tiny_model_file), "--data", str(data), "--against", str(tiny_model_file),
            "--precision", "bf16-linear", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    payload = json.loads(out.read_text())
    assert payload["lever"] == "precision:bf16-linear" and payload["dtype"] == "bf16-linear"
    assert 0 < payload["force_rmse"] < 50.0  # meV/Å against the float64 model itself
    check_json = tmp_path / "check.json"
    assert main(["check", str(tiny_model_file), "--structure", str(data), "--precision", "fp32",
                 "--nve-steps", "5", "--json", str(check_json)]) == 0  # fmt: skip
    assert json.loads(check_json.read_text())["precision"] == "fp32"


def test_dtype_and_precision_are_exclusive(tiny_model_file, ethanol, tmp_path, capsys):
    data = tmp_path / "eth.xyz"
    write(data, ethanol)
    try:
        main(["md", str(tiny_model_file), str(data), "--dtype", "float32", "--precision", "fp32"])
    except SystemExit as exit_:
        assert exit_.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_md_demo_and_bench_take_a_precision(tiny_model_file, ethanol, tmp_path, capsys):
    data = tmp_path / "eth.xyz"
    write(data, ethanol)
    assert main(["md", str(tiny_model_file), str(data), "--steps", "3",
                 "--precision", "bf16-mixed"]) == 0  # fmt: skip
    assert "steps/s" in capsys.readouterr().out
    assert main(["demo", "--model", str(tiny_model_file), "--steps", "2",
                 "--precision", "bf16-linear"]) == 0  # fmt: skip
    assert "macelerate bf16-linear" in capsys.readouterr().out
    out = tmp_path / "bench.json"
    assert main(["bench", str(tiny_model_file), "--structure", str(data), "--atoms", "9",
                 "--repeats", "1", "--warmup", "0", "--no-reference",
                 "--lever", "exact,precision:bf16-linear", "--json", str(out)]) == 0  # fmt: skip
    rows = json.loads(out.read_text())["results"]
    assert [r["lever"] for r in rows] == ["exact", "precision:bf16-linear"]
    assert all(r["status"] == "ok" for r in rows), rows
