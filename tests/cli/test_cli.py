"""The macelerate command: each subcommand on a tiny model, and bad input as one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase.io import write

from macelerate.cli.__main__ import main
from macelerate.models.loading import load


@pytest.fixture
def labelled_file(tmp_path, tiny_model, silicon, ethanol):
    """Two structures labelled with the tiny model plus a known offset, under custom keys."""
    potential = load(tiny_model)
    frames = []
    for atoms in (silicon, ethanol):
        prediction = potential.predict(atoms, compute_stress=False)
        frame = atoms.copy()
        frame.info["REF_energy"] = float(prediction.energy[0]) + 0.01 * len(atoms)
        frame.arrays["REF_forces"] = prediction.forces + 0.02
        frames.append(frame)
    path = tmp_path / "data.xyz"
    write(path, frames)
    return path


def test_info(tiny_model_file, capsys):
    assert main(["info", str(tiny_model_file), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["elements"] == ["H", "C", "O", "Si"] and facts["channels"] == 8


def test_eval_reports_known_errors(tiny_model_file, labelled_file, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", str(tiny_model_file), "--data", str(labelled_file), "--json", str(out),
            "--energy-key", "REF_energy", "--forces-key", "REF_forces"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["energy_mae"] == pytest.approx(10.0, abs=1e-6)  # meV/atom
    assert report["force_mae"] == pytest.approx(20.0, abs=1e-6)  # meV/Å
    assert len(report["structures"]) == 2
    assert "energy  MAE 10.00" in capsys.readouterr().out


def test_eval_missing_key_is_one_clear_error(tiny_model_file, labelled_file, capsys):
    code = main(["eval", str(tiny_model_file), "--data", str(labelled_file)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no 'energy' label" in err and "REF_energy" in err and "--energy-key" in err


ELEMENT_OFFSETS = {"H": 0.01, "C": 0.03, "O": -0.02, "Si": 0.04}  # eV/Å on every component


@pytest.fixture
def element_offset_file(tmp_path, tiny_model, silicon, ethanol):
    """Structures whose force labels are the tiny model's forces plus a known offset per element."""
    potential = load(tiny_model)
    frames = []
    for atoms in (silicon, ethanol):
        prediction = potential.predict(atoms, compute_stress=False)
        frame = atoms.copy()
        offsets = np.array([ELEMENT_OFFSETS[symbol] for symbol in atoms.get_chemical_symbols()])
        frame.info["REF_energy"] = float(prediction.energy[0])
        frame.arrays["REF_forces"] = prediction.forces + offsets[:, None]
        frames.append(frame)
    path = tmp_path / "offsets.xyz"
    write(path, frames)
    return path


def test_eval_per_element_force_errors(tiny_model_file, element_offset_file, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", str(tiny_model_file), "--data", str(element_offset_file), "--json", str(out),
            "--energy-key", "REF_energy", "--forces-key", "REF_forces",
            "--label", "tiny-exact"]  # fmt: skip
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["schema"] == "macelerate-eval/1" and report["model_label"] == "tiny-exact"
    assert report["lever"] == "exact" and report["against"] is None and report["dtype"] == "float64"
    assert report["data"] == str(element_offset_file) and report["model"] == str(tiny_model_file)
    per_element = report["per_element"]
    assert list(per_element) == ["H", "C", "O", "Si"]  # by atomic number
    assert {s: e["n_atoms"] for s, e in per_element.items()} == {"H": 6, "C": 2, "O": 1, "Si": 8}
    for symbol, offset in ELEMENT_OFFSETS.items():
        assert per_element[symbol]["force_mae"] == pytest.approx(1e3 * abs(offset), abs=1e-6)
        assert per_element[symbol]["force_rmse"] == pytest.approx(1e3 * abs(offset), abs=1e-6)
    assert report["energy_mae"] == pytest.approx(0.0, abs=1e-9)
    assert "Si    MAE 40.00" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["voigt", "vector9", "matrix"])
def test_eval_stress_labels(tiny_model, tiny_model_file, silicon, tmp_path, layout):
    """Stress labels as Voigt-6, 9-vector or 3x3, each 1 meV/Å³ above the model's stress."""
    from ase.stress import full_3x3_to_voigt_6_stress

    from macelerate.data.labels import LabelKeys
    from macelerate.evaluate import evaluate

    potential = load(tiny_model)
    frames = []
    for seed in (1, 2):
        atoms = silicon.copy()
        atoms.rattle(0.02, rng=np.random.default_rng(seed))
        prediction = potential.predict(atoms)
        stress = prediction.stress[0] + 1e-3
        atoms.info["REF_energy"] = float(prediction.energy[0])
        atoms.arrays["REF_forces"] = prediction.forces
        atoms.info["REF_stress"] = {
            "voigt": full_3x3_to_voigt_6_stress(stress),
            "vector9": stress.ravel(),
            "matrix": stress,
        }[layout]
        frames.append(atoms)
    keys = LabelKeys(energy="REF_energy", forces="REF_forces", stress="REF_stress")
    report = evaluate(potential, frames, keys=keys)
    assert report.stress_mae == pytest.approx(1.0, abs=1e-9)  # meV/Å³
    assert report.stress_rmse == pytest.approx(1.0, abs=1e-9)
    assert report.structures[0].stress_mae == pytest.approx(1.0, abs=1e-9)
    path = tmp_path / "stress.xyz"
    write(path, frames)
    out = tmp_path / "eval.json"
    assert main(["eval", str(tiny_model_file), "--data", str(path), "--energy-key", "REF_energy",
                 "--forces-key", "REF_forces", "--stress-key", "REF_stress",
                 "--json", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["stress_mae"] == pytest.approx(1.0, abs=1e-6)


def test_eval_bad_stress_label_is_one_clear_error(tiny_model_file, silicon, tmp_path, capsys):
    atoms = silicon.copy()
    atoms.info["REF_energy"] = 0.0
    atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
    atoms.info["REF_stress"] = np.ones(4)
    path = tmp_path / "bad.xyz"
    write(path, atoms)
    args = ["eval", str(tiny_model_file), "--data", str(path), "--energy-key", "REF_energy",
            "--forces-key", "REF_forces", "--stress-key", "REF_stress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "stress label of shape (4,)" in err and "Voigt-6" in err


def test_eval_against_reference_model(tiny_model_file, tmp_path, silicon, ethanol):
    from macelerate.testing import tiny_mace

    other = tmp_path / "other.model"
    torch.save(tiny_mace([1, 6, 8, 14], seed=7), other)
    data = tmp_path / "unlabelled.xyz"
    write(data, [silicon, ethanol])
    out = tmp_path / "self.json"
    base = ["eval", str(tiny_model_file), "--data", str(data), "--json", str(out)]
    assert main([*base, "--against", str(tiny_model_file)]) == 0  # labels absent: keys ignored
    same = json.loads(out.read_text())
    assert same["against"] == str(tiny_model_file) and same["n_structures"] == 2
    assert same["energy_mae"] == 0.0 and same["force_mae"] == 0.0
    assert same["stress_mae"] is None  # ethanol is not periodic
    assert all(e["force_mae"] == 0.0 for e in same["per_element"].values())
    assert main([*base, "--against", str(other)]) == 0
    different = json.loads(out.read_text())
    assert different["energy_mae"] > 0 and different["force_mae"] > 0
    assert set(different["per_element"]) == {"H", "C", "O", "Si"}


def test_eval_against_reference_compares_stress(tiny_model, silicon):
    from macelerate.evaluate import evaluate
    from macelerate.testing import tiny_mace

    frames = [silicon, silicon.copy()]
    frames[1].rattle(0.02, rng=np.random.default_rng(3))
    student = load(tiny_mace([1, 6, 8, 14], seed=7))
    report = evaluate(student, frames, reference=load(tiny_model), batch_size=1)
    assert report.stress_mae > 0 and report.n_structures == 2
    assert evaluate(student, frames, reference=student).stress_mae == 0.0


def test_bad_model_file_is_one_clear_error(tmp_path, capsys):
    bogus = tmp_path / "x.model"
    bogus.write_text("hello")
    assert main(["info", str(bogus)]) == 2
    assert "not a model file" in capsys.readouterr().err


def test_md_and_convert(tiny_model_file, tmp_path, ethanol, capsys):
    structure = tmp_path / "ethanol.xyz"
    write(structure, ethanol)
    assert main(["md", str(tiny_model_file), str(structure), "--steps", "3", "--timestep", "0.5",
                 "--trajectory", str(tmp_path / "md.traj"), "--write-every", "1"]) == 0  # fmt: skip
    assert "steps/s" in capsys.readouterr().out
    assert main(["convert", str(tiny_model_file), str(tmp_path / "tiny.pt")]) == 0
    assert main(["info", str(tmp_path / "tiny.pt")]) == 0
    assert "checkpoint" in capsys.readouterr().out


def test_demo_table_on_a_given_model(tiny_model_file, capsys):
    assert main(["demo", "--model", str(tiny_model_file), "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "mace-torch MACECalculator" in out and "macelerate Calculator" in out
    row = next(line for line in out.splitlines() if line.startswith("macelerate Calculator"))
    assert float(row.split()[-1]) < 1e-10  # float64: same forces as mace-torch's calculator


def test_demo_structure_is_graphene_oxide():
    from macelerate.data.structures import graphene_oxide

    atoms = graphene_oxide(repeat=(7, 5))
    assert atoms.get_chemical_formula() == "C140O28" and atoms.pbc.all()
    assert atoms.get_all_distances(mic=True)[~np.eye(len(atoms), dtype=bool)].min() > 1.3


def test_eval_shows_progress_unless_told_not_to(tiny_model_file, labelled_file, capsys):
    args = ["eval", str(tiny_model_file), "--data", str(labelled_file),
            "--energy-key", "REF_energy", "--forces-key", "REF_forces"]  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "model: 100%" in err and "2/2" in err and "structure" in err
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


HELPED_COMMANDS = ("check", "md", "eval", "bench", "report", "demo")


def _subparsers():
    import argparse

    from macelerate.cli.__main__ import build_parser

    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


@pytest.mark.parametrize("command", HELPED_COMMANDS)
def test_every_option_has_help_and_shows_its_default(command):
    import argparse

    subparser = _subparsers()[command]
    formatter = subparser._get_formatter()
    for action in subparser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{command} {action.dest} has no help text"
        default = action.default
        if action.option_strings and default is not None and default is not False:
            text = formatter._get_help_string(action) % {"default": default}
            assert "default" in text, f"{command} {action.option_strings[0]} hides its default"


def test_help_shows_the_defaults(capsys):
    for command, expected in [
        ("md", ["--steps STEPS", "(default: 100)", "(default: 10)", "(default: 1.0)"]),
        ("eval", ["(default: 8)", "(default: energy)"]),
        ("bench", ["(default: 64,512,1000)", "(default: 5)"]),
        ("demo", ["(default: 20)", "(default: float64)"]),
    ]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # undo line wrapping
        assert all(snippet in text for snippet in expected), (command, text)
