"""``macelerate bench``: the results file, the tables, out-of-memory rows and bad input."""

from __future__ import annotations

import json
import resource

import numpy as np
from ase.io import write

from macelerate.cli.__main__ import main
from macelerate.mace.config import describe_mace_model
from macelerate.models.checkpoint import save_checkpoint


def test_bench_structure_file_json_and_markdown(tiny_model_file, silicon, tmp_path, capsys):
    structure = tmp_path / "si.xyz"
    write(structure, silicon)
    out = tmp_path / "bench.json"
    args = ["bench", str(tiny_model_file), "--structure", str(structure), "--atoms", "12",
            "--repeats", "1", "--warmup", "1", "--no-reference", "--stress",
            "--json", str(out), "--markdown"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    payload = json.loads(out.read_text())
    assert payload["schema"] == "macelerate-bench/1"
    assert payload["command"].startswith(f"macelerate bench {tiny_model_file} --structure")
    assert "--stress" in payload["command"] and "--reference none" in payload["command"]
    assert payload["settings"]["stress"] is True and payload["settings"]["repeats"] == 1
    (row,) = payload["results"]
    assert row["engine"] == "macelerate" and row["status"] == "ok", row["error"]
    assert row["system"] == f"file:{structure}(1x1x2)" and row["n_atoms"] == 16
    assert row["ms_per_step"]["median"] > 0 and row["peak_memory_mb"] > 0
    table = captured.out.splitlines()
    assert table[0].startswith("| model | system | atoms | engine | ms/step median")
    assert table[2].startswith(f"| tiny | file:{structure}(1x1x2) | 16 | macelerate (exact) |")
    assert "macelerate: ok" in captured.err  # progress goes to stderr


def test_impossible_memory_limit_gives_oom_rows(tiny_model, tmp_path, capsys):
    """A 0.3 GiB cap is below what a worker already holds, so its first step cannot allocate.

    The model is a macelerate checkpoint: the reference engine runs the plain mace-torch model
    macelerate rebuilt from it (written by macelerate, so nothing from the user's file runs) under
    the same cap, and runs out of memory too.
    """
    limit_before = resource.getrlimit(resource.RLIMIT_AS)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, model_config=describe_mace_model(tiny_model),
                    state_dict=tiny_model.state_dict(), provenance={"source": "test"})  # fmt: skip
    out = tmp_path / "oom.json"
    args = ["bench", str(checkpoint), "--atoms", "4000", "--repeats", "1", "--warmup", "0",
            "--memory-limit-gb", "0.3", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    macelerate, reference = json.loads(out.read_text())["results"]
    assert macelerate["engine"] == "macelerate" and macelerate["status"] == "oom"
    assert "alloc" in macelerate["error"]  # "can't allocate memory" or "std::bad_alloc"
    assert macelerate["n_edges"] > 40 * macelerate["n_atoms"]  # the graph was built before the cap
    assert reference["engine"] == "mace-torch" and reference["status"] == "oom"
    assert all(r["ms_per_step"] is None and r["n_atoms"] >= 4000 for r in (macelerate, reference))
    assert "OOM: " in capsys.readouterr().out
    # the limit lived in the worker only
    assert resource.getrlimit(resource.RLIMIT_AS) == limit_before
    assert np.ones(2**26).sum() == 2**26  # 512 MiB, far beyond the worker's limit


def test_bad_input_is_one_clear_error(tiny_model_file, ethanol, tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.model")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.model does not exist" in err
    structure = tmp_path / "gold.xyz"
    write(structure, ethanol[:1].copy())
    gold = ethanol[:1].copy()
    gold.numbers = [79]
    write(structure, gold)
    assert main(["bench", str(tiny_model_file), "--structure", str(structure)]) == 2
    assert "['Au'], which model" in capsys.readouterr().err
    assert main(["bench", str(tiny_model_file), "--atoms", "64,many"]) == 2
    assert "--atoms takes comma-separated integers" in capsys.readouterr().err


def test_a_reference_engine_that_cannot_run_is_an_error_row(tiny_model_file, tmp_path):
    """Symmetrix-XL is optional: not installed (CI), or refusing the tiny model (its converter
    supports l_max 3 only), the row is an error with the reason, and the run goes on."""
    out = tmp_path / "peers.json"
    args = ["bench", str(tiny_model_file), "--atoms", "8", "--repeats", "1", "--warmup", "0",
            "--reference", "symmetrix", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(args) == 0
    macelerate, symmetrix = json.loads(out.read_text())["results"]
    assert macelerate["status"] == "ok" and symmetrix["engine"] == "symmetrix"
    assert symmetrix["status"] == "error" and symmetrix["error"]
    assert json.loads(out.read_text())["settings"]["references"] == ["symmetrix"]
