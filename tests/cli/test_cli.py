"""The macelerate command: each subcommand on a tiny model, and bad input as one error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
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
    from macelerate.demo.structures import graphene_oxide

    atoms = graphene_oxide(repeat=(7, 5))
    assert atoms.get_chemical_formula() == "C140O28" and atoms.pbc.all()
    assert atoms.get_all_distances(mic=True)[~np.eye(len(atoms), dtype=bool)].min() > 1.3
