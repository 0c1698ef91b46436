"""``macelerate label`` and ``macelerate train`` end to end on tiny files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

from macelerate.cli.__main__ import main
from macelerate.data.labels import read_structures
from macelerate.models.loading import load
from macelerate.testing import tiny_mace_config
from tests.train import ethanols, one_torch_thread  # noqa: F401  (autouse fixture)

QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def labelled_file(tmp_path_factory, tiny_model_file):
    """Four ethanols labelled by ``macelerate label`` with the tiny model (Hessian rows of one
    atom each)."""
    folder = tmp_path_factory.mktemp("label")
    pool, out = folder / "pool.xyz", folder / "labelled.xyz"
    write(pool, ethanols(4))
    args = ["label", str(tiny_model_file), "--structures", str(pool), "--out", str(out)]
    assert main([*args, "--hessian-rows", "1"]) == 0
    return out


def test_label_writes_teacher_labels_and_provenance(labelled_file, tiny_model_file):
    structures = read_structures(labelled_file)
    teacher = load(tiny_model_file)
    prediction = teacher.predict(structures[1])
    assert structures[1].get_potential_energy() == pytest.approx(prediction.energy[0], abs=1e-9)
    assert structures[1].info["teacher"] == str(tiny_model_file)
    assert structures[1].arrays["hessian_rows"].shape == (9, 9)  # 9 atoms, 3 rows x 3


def test_label_from_md_samples(tiny_model_file, tmp_path, capsys):
    start = tmp_path / "start.xyz"
    write(start, ethanols(1))
    out = tmp_path / "md.xyz"
    args = ["label", str(tiny_model_file), "--md", str(start), "--temperatures", "300", "600",
            "--steps", "4", "--interval", "2", "--rattled", "2", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    structures = read_structures(out)
    assert len(structures) == 2 * 2 + 2
    assert all(atoms.calc is not None for atoms in structures)


def test_fine_tune_writes_a_checkpoint_and_resumes(labelled_file, tiny_model_file, tmp_path):
    out, state, report = tmp_path / "tuned.pt", tmp_path / "state.pt", tmp_path / "report.json"
    common = ["train", str(tiny_model_file), "--data", str(labelled_file),
              "--out", str(out), "--epochs", "1", "--batch-size", "2", "--lr", "1e-3",
              "--val-fraction", "0.25", "--checkpoint", str(state), *QUIET]  # fmt: skip
    assert main([*common, "--max-steps", "1"]) == 0
    assert main([*common, "--resume", "--json", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["resumed_from_step"] == 1 and summary["steps"] == 2
    payload = torch.load(out, weights_only=True)
    entry = payload["transforms_applied"][-1]
    assert entry["name"] == "train" and entry["summary"]["steps"] == 2 and entry["persistent"]
    assert entry["options"]["config"]["lr"] == 1e-3 and len(entry["summary"]["data_sha256"]) == 64
    tuned = load(out)
    original = load(tiny_model_file)
    atoms = read_structures(labelled_file)[0]
    difference = np.abs(tuned.predict(atoms).forces - original.predict(atoms).forces).max()
    assert 0 < difference < 1.0  # fine-tuned: changed, but a little


def test_train_from_a_config_file(labelled_file, tmp_path, capsys):
    config = tmp_path / "model.json"
    config.write_text(json.dumps(tiny_model_config := tiny_mace_config([1, 6, 8])))
    out = tmp_path / "fresh.pt"
    args = ["train", "--model", str(config), "--data", str(labelled_file), "--out", str(out),
            "--epochs", "1", "--batch-size", "4", "--huber-delta", "none", *QUIET]  # fmt: skip
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert load(out).atomic_numbers == tiny_model_config["atomic_numbers"]


def test_bad_input_is_one_clear_error(labelled_file, tiny_model_file, tmp_path, capsys):
    base = ["train", "--model", str(tiny_model_file), "--out", str(tmp_path / "x.pt"), *QUIET]
    code = main([*base, "--data", str(labelled_file), "--energy-key", "QM_energy"])
    err = capsys.readouterr().err
    assert code == 2 and "no 'QM_energy' label" in err and "energy" in err
    iron = Atoms("Fe2", positions=[[0, 0, 0], [0, 0, 2.0]])
    iron.info["energy"], iron.arrays["forces"] = -1.0, np.zeros((2, 3))
    write(tmp_path / "iron.xyz", [iron, iron])
    code = main([*base, "--data", str(tmp_path / "iron.xyz")])
    err = capsys.readouterr().err
    assert code == 2 and "Fe" in err
    assert not (tmp_path / "x.pt").exists()


def test_sparse_fine_tuning_reports_what_it_zeroed(
    labelled_file, tiny_model_file, tmp_path, capsys
):
    out = tmp_path / "sparse.pt"
    base = ["train", str(tiny_model_file), "--data", str(labelled_file), "--out", str(out),
            "--epochs", "2", "--batch-size", "2", "--val-fraction", "0", *QUIET]  # fmt: skip
    code = main([*base, "--sparse", "rigl", "--sparsity", "1.5"])
    err = capsys.readouterr().err
    assert code == 2 and "--sparsity" in err and "(0, 1)" in err and not out.exists()
    assert main([*base, "--sparse", "set", "--sparsity", "0.5", "--sparse-groups", "radial",
                 "--sparse-update-every", "1"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "sparse training (set" in printed and "radial 50." in printed and "not time" in printed
    model = load(out, fuse_message_passing=False).model
    radial = [p for n, p in model.named_parameters() if ".conv_tp_weights.layer" in n]
    zeros = sum(int((p == 0).sum()) for p in radial) / sum(p.numel() for p in radial)
    assert zeros == pytest.approx(0.5, abs=0.02)


def test_mixed_precision_fine_tuning(labelled_file, tiny_model_file, tmp_path, capsys):
    out, report = tmp_path / "bf16.pt", tmp_path / "report.json"
    base = ["train", str(tiny_model_file), "--data", str(labelled_file), "--out", str(out),
            "--epochs", "1", "--batch-size", "2", "--autocast", "bfloat16", *QUIET]  # fmt: skip
    code = main([*base, "--dtype", "float64"])
    err = capsys.readouterr().err
    assert code == 2 and "--dtype float32" in err and not out.exists()
    assert main([*base, "--dtype", "float32", "--json", str(report)]) == 0
    summary = json.loads(report.read_text())
    assert summary["mixed_precision"]["dtype"] == "bfloat16"
    assert "readouts.0" in summary["mixed_precision"]["islands"]
    assert all(p.dtype == torch.float32 for p in load(out, dtype="float32").model.parameters())
