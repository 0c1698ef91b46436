"""``macelerate prune`` and ``macelerate distill`` end to end on tiny models and files."""

from __future__ import annotations

import json

import numpy as np
import torch
from ase.io import write

from macelerate import load
from macelerate.cli.__main__ import main
from macelerate.testing import tiny_mace


def _labelled(tmp_path, model, structures):
    potential = load(model)
    labelled = []
    for atoms in structures:
        atoms = atoms.copy()
        prediction = potential.predict(atoms, compute_stress=False)
        atoms.info["REF_energy"] = float(prediction.energy[0])
        atoms.arrays["REF_forces"] = prediction.forces
        labelled.append(atoms)
    path = tmp_path / "data.xyz"
    write(path, labelled)
    return path


def test_prune_with_recovery_writes_a_smaller_plain_mace_model(tmp_path, ethanol):
    model = tiny_mace([1, 6, 8], channels=8, max_L=1, max_ell=2)
    model_file = tmp_path / "big.model"
    torch.save(model, model_file)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(6):
        frame = ethanol.copy()
        frame.positions += rng.normal(scale=0.05, size=frame.positions.shape)
        frames.append(frame)
    data = _labelled(tmp_path, model, frames)
    out, mace_file, report = tmp_path / "small.pt", tmp_path / "small.model", tmp_path / "r.json"
    args = ["prune", str(model_file), "--channels", "4", "--max-ell", "1", "--calibration",
            str(data), "--energy-key", "REF_energy", "--forces-key", "REF_forces", "--out",
            str(out), "--mace-model", str(mace_file), "--finetune", str(data), "--max-steps", "2",
            "--epochs", "1", "--test", str(data), "--no-progress", "--json", str(report),
            "--dtype", "float64"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(report.read_text())
    assert summary["prune"]["parameters_after"] < summary["prune"]["parameters_before"]
    assert summary["original_test"]["force_rmse"] < 1e-3  # labels are its own (text precision)
    assert summary["recovery"]["steps"] == 2 and "recovered_test" in summary
    pruned = load(out, allow_pickle=False)
    assert pruned.source.transforms_applied[-1]["name"] == "recovery"
    from macelerate._mace import import_mace

    import_mace()
    from mace.calculators import MACECalculator

    ethanol.calc = MACECalculator(model_paths=str(mace_file), device="cpu", default_dtype="float64")
    np.testing.assert_allclose(ethanol.get_forces(), pruned.predict(ethanol).forces, atol=1e-8)


def test_prune_help_names_every_option_and_its_default():
    import argparse

    from macelerate.cli.__main__ import build_parser

    subparsers = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    )
    parser = subparsers.choices["prune"]
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions]
    text = " ".join(parser.format_help().split())
    for shown in ("(default: taylor)", "(default: 8)", "(default: 0.005)", "(default: float32)"):
        assert shown in text


def test_prune_records_the_transform_and_shows_importance_progress(tmp_path, ethanol, capsys):
    model = tiny_mace([1, 6, 8], channels=8)
    model_file = tmp_path / "big.model"
    torch.save(model, model_file)
    data = _labelled(tmp_path, model, [ethanol] * 2)
    out = tmp_path / "small.pt"
    args = ["prune", str(model_file), "--channels", "4", "--calibration", str(data), "--out",
            str(out), "--energy-key", "REF_energy", "--forces-key", "REF_forces"]  # fmt: skip
    assert main(args) == 0
    assert "importance" in capsys.readouterr().err  # tqdm bar over the calibration frames
    record = load(out, allow_pickle=False).source.transforms_applied[-1]
    assert record["name"] == "prune" and record["options"]["channels"] == 4
    assert record["summary"]["plan"]["channels"] == 4
    assert record["options"]["importance"] == "taylor (labels)"


def test_distill_writes_a_student_the_calculator_runs(tmp_path, ethanol):
    teacher = tiny_mace([1, 6, 8], channels=8)
    teacher_file = tmp_path / "teacher.model"
    torch.save(teacher, teacher_file)
    data = tmp_path / "pool.xyz"
    write(data, [ethanol] * 4)
    out, report = tmp_path / "student.pt", tmp_path / "d.json"
    args = ["distill", str(teacher_file), "--data", str(data), "--out", str(out), "--channels",
            "4", "--max-neighbors", "6", "--confidence-head", "--epochs", "1", "--max-steps", "2",
            "--no-progress", "--json", str(report), "--dtype", "float64"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(report.read_text())["student"]["max_neighbors"] == 6
    student = load(out, allow_pickle=False)
    assert student.source.transforms_applied[0]["name"] == "distill"
    from macelerate import Calculator

    ethanol.calc = Calculator(student)
    assert np.isfinite(ethanol.get_forces()).all()
    assert ethanol.calc.get_property("force_confidence", ethanol).shape == (len(ethanol),)


def test_distill_builds_hybrid_students_and_names_bad_layer_kinds(tmp_path, ethanol, capsys):
    teacher = tiny_mace([1, 6, 8], channels=8)
    teacher_file = tmp_path / "teacher.model"
    torch.save(teacher, teacher_file)
    data = tmp_path / "pool.xyz"
    write(data, [ethanol] * 4)
    out = tmp_path / "hybrid.pt"
    common = [
        "distill",
        str(teacher_file),
        "--data",
        str(data),
        "--channels",
        "8",
        "--max-L",
        "0",
        "--epochs",
        "1",
        "--max-steps",
        "2",
        "--no-progress",
        "--dtype",
        "float64",
    ]
    assert main([*common, "--out", str(out), "--layers", "mace,cartesian", "--rotation-augment",
                 "--equigrad", "0.1"]) == 0  # fmt: skip
    student = load(out, allow_pickle=False)
    assert student.model.config.layers == ("mace", "cartesian")
    assert student.source.transforms_applied[0]["options"]["config"]["rotation_augmentation"]
    assert main([*common, "--out", str(tmp_path / "bad.pt"), "--layers", "attention,mace"]) != 0
    assert "mace layers must come before" in capsys.readouterr().err
    assert not (tmp_path / "bad.pt").exists()
    edge = tmp_path / "edge.pt"  # an L=0 student with equivariant pair forces and their virial
    assert main([*common, "--out", str(edge), "--direct-forces", "edge", "--direct-stress",
                 "--edge-head-width", "8"]) == 0  # fmt: skip
    config = load(edge, allow_pickle=False).model.config
    assert (config.force_head_kind, config.edge_head_width) == ("edge", 8) and config.direct_stress
    assert main([*common, "--out", str(tmp_path / "node.pt"), "--direct-forces"]) != 0
    assert "force_head_kind='edge'" in capsys.readouterr().err  # a node head needs L >= 1


def test_gradual_pruning_trains_after_every_stage(tmp_path, ethanol, capsys):
    model = tiny_mace([1, 6, 8], channels=16)
    model_file = tmp_path / "wide.model"
    torch.save(model, model_file)
    frames = []
    for seed in range(6):
        frame = ethanol.copy()
        frame.rattle(0.05, seed=seed)
        frames.append(frame)
    data = _labelled(tmp_path, model, frames)
    out, report = tmp_path / "narrow.pt", tmp_path / "r.json"
    args = ["prune", str(model_file), "--channels", "4", "--calibration", str(data),
            "--energy-key", "REF_energy", "--forces-key", "REF_forces", "--out", str(out),
            "--finetune", str(data), "--no-progress", "--dtype", "float64"]  # fmt: skip
    assert main([*args, "--stages", "2"]) == 2  # no --max-steps: refused before any work
    assert "--max-steps" in capsys.readouterr().err and not out.exists()
    at = args.index("--calibration")
    no_calibration = args[:at] + args[at + 2 :]
    assert main([*no_calibration, "--remove-paths", "1"]) == 2  # one-shot scoring needs data
    assert "--calibration" in capsys.readouterr().err and not out.exists()
    assert main([*args, "--stages", "2", "--max-steps", "4", "--json", str(report),
                 "--remove-paths", "2"]) == 0  # fmt: skip
    summary = json.loads(report.read_text())
    stages = summary["gradual"]["stages"]
    assert [len(s["removed_paths"]) for s in stages] == [1, 1]
    assert len(summary["gradual"]["removed_paths"]) == 2
    assert [s["channels"] for s in stages] == [8, 4] and [s["trained_steps"] for s in stages] == [
        2,
        2,
    ]
    printed = capsys.readouterr().out
    assert "stage: 8 channels" in printed and printed.count("removed path interactions.") == 2
    pruned = load(out, allow_pickle=False)
    assert pruned.source.transforms_applied[-1]["name"] == "gradual_prune"


def test_distill_grows_the_correlation_order_in_stages(tmp_path, ethanol, capsys):
    teacher_file = tmp_path / "teacher.model"
    torch.save(tiny_mace([1, 6, 8], channels=8), teacher_file)
    data = tmp_path / "pool.xyz"
    write(data, [ethanol] * 4)
    out, report = tmp_path / "grown.pt", tmp_path / "grown.json"
    common = ["distill", str(teacher_file), "--data", str(data), "--channels", "4",
              "--correlation", "2", "--no-progress", "--dtype", "float64"]  # fmt: skip
    assert main([*common, "--out", str(out), "--correlation-steps", "1,2",
                 "--json", str(report)]) == 0  # fmt: skip
    stages = json.loads(report.read_text())["progressive_correlation"]["stages"]
    assert [(s["correlation"], s["trained_steps"]) for s in stages] == [(1, 1), (2, 2)]
    assert load(out, allow_pickle=False).model.config.correlation == 2
    assert "order 2: 2 steps" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "bad.pt"), "--correlation-steps", "5"]) != 0
    assert "one step count >= 1 per order 1..--correlation (2)" in capsys.readouterr().err
    direct = tmp_path / "direct.pt"  # the grown student as the start of a direct-force student
    assert main([*common, "--out", str(direct), "--init-from", str(out), "--direct-forces", "edge",
                 "--max-steps", "1"]) == 0  # fmt: skip
    init = load(direct, allow_pickle=False).source.transforms_applied[-1]["options"]["init_from"]
    assert init["fresh_parts"] == ["force_head"] and init["copied_tensors"] > 0
