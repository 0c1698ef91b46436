"""write_report_card: report.md and PNGs from a JSON summary of a real tiny validation."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from ase.build import molecule

from macelerate import __version__, load
from macelerate._torch_state import num_threads as torch_threads
from macelerate.models.student import StudentConfig, build_student
from macelerate.pipeline.report_card import FIGURES, ReportCardError, write_report_card
from macelerate.pipeline.validation import ValidationConfig, validate_student
from macelerate.train.teacher import label_structures
from tests.pipeline.test_validation import noisy_copies

ELEMENTS = (1, 6, 8, 14)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def validation(tiny_model) -> dict:
    """A student validated against a tiny teacher, with reference labels from another model."""
    with torch_threads(1):
        teacher = load(tiny_model)
        torch.manual_seed(0)
        student = load(build_student(StudentConfig(
            atomic_numbers=ELEMENTS, atomic_energies=(-1.0, -1.5, -2.0, -2.5), channels=8,
            max_L=1, max_ell=2, r_max=4.0, radial_mlp=(8, 8), confidence_head=True,
        )))  # fmt: skip
        rng = np.random.default_rng(0)
        structures = []
        for _ in range(3):
            atoms = molecule("CH3CH2OH")
            atoms.rattle(0.05, rng=rng)
            structures.append(atoms)
        test = label_structures(teacher, structures)
        reference = noisy_copies(test, seed=3)
        config = ValidationConfig(
            nve_steps=10, md_steps_rdf=10, rdf_every=2, speed_repeats=2, threads=1
        )
        result = validate_student(teacher, student, test, structures[0], reference=reference,
                                  config=config, progress=False)  # fmt: skip
    return json.loads(json.dumps(result.to_dict(), allow_nan=False))  # as summary.json holds it


def summary_for(validation: dict | None) -> dict:
    ladder = [
        {"name": "L0-8ch", "architecture": {"channels": 8, "max_L": 0}, "ms_per_step": 1.0,
         "speedup": 12.0, "trained": True, "val_forces_rmse_mev": 40.0, "meets_speed": True,
         "meets_accuracy": True},
        {"name": "L1-16ch", "architecture": {"channels": 16, "max_L": 1}, "ms_per_step": 3.0,
         "speedup": 4.0, "trained": False, "val_forces_rmse_mev": None, "meets_speed": False,
         "meets_accuracy": None},
    ]  # fmt: skip
    return {
        "verdict": "MET: student L0-8ch, 12.0x faster than the teacher",
        "met": True,
        "teacher": {"path": "teacher.model", "kind": "mace-pickle"},
        "structure": {"formula": "C2H6O", "n_atoms": 9, "pbc": [False, False, False]},
        "target": {"speedup": 10, "max_force_error_ratio": 1.2, "max_force_rmse_mev": None},
        "ladder": ladder,
        "chosen": "L0-8ch",
        "stages": {"sample": 1.5, "train": 20.0},
        "validation": validation,
        "files": {"student": "student.pt"},
        "command": "macelerate compress teacher.model --structures start.xyz --out run",
    }


def _body(report: str) -> list[str]:
    """The lines of ``report`` after the title, blank lines left out."""
    lines = [line for line in report.splitlines() if line.strip()]
    assert lines[0].startswith("# ")
    return lines[1:]


def test_report_card_writes_markdown_and_every_figure(tmp_path, validation):
    summary = summary_for(validation)
    path = write_report_card(tmp_path, summary)
    assert path == tmp_path / "report.md"
    report = path.read_text()
    assert _body(report)[0] == f"**{summary['verdict']}**"
    for name in FIGURES:  # parity, per_element, nve, rdf, speed
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name
        assert f"]({name})" in report
    assert "| speedup | 10 |" in report  # targets table, measured from the validation
    assert "| max_force_error_ratio | 1.2 |" in report
    assert "L1-16ch" in report and "Teacher: 12.00 ms/step." in report
    assert "student vs reference" in report and "Force error ratio" in report
    assert f"macelerate {__version__}" in report and f"torch {torch.__version__}" in report
    assert summary["command"] in report
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries
    assert summary == summary_for(validation)  # the summary is not modified


def test_failed_student_without_reference(tmp_path, validation):
    failed = copy.deepcopy(validation)
    problem = "MD blew up at step 3 of 10 (t = 1.5 fs): a force reached 900 eV/Å"
    failed.update(failed=True, problem=problem, teacher_vs_reference=None,
                  student_vs_reference=None, force_error_ratio=None)  # fmt: skip
    failed["nve_student"].update(problem=problem, drift_mev_per_atom_ps=None)
    failed["rdf"].update(problem=problem, distance=None)
    failed["series"]["rdf"]["student"] = None
    failed["series"]["parity_reference"] = None
    trace = failed["series"]["nve"]["student"]
    trace["time_ps"], trace["total_energy_mev_per_atom"] = trace["time_ps"][:4], [0, 1, None, 9]
    summary = summary_for(failed)
    checks = {"stable_md": {"target": True, "measured": False, "met": False}}
    summary.update(verdict="NOT MET (stable_md): student L0-8ch", met=False, checks=checks)
    report = write_report_card(tmp_path, summary).read_text()
    assert _body(report)[0] == "**NOT MET (stable_md): student L0-8ch**"
    assert "The student's MD failed" in report and "blew up: MD blew up at step 3" in report
    assert "| stable_md | yes | no | no |" in report  # the given checks, not derived ones
    assert "student vs reference" not in report
    assert all((tmp_path / name).is_file() for name in FIGURES)  # teacher-only curves still drawn


def test_no_validated_student(tmp_path):
    summary = summary_for(None)
    summary.update(verdict="NOT MET: no student finished training inside the budget", met=False,
                   chosen=None, ladder=[])  # fmt: skip
    report = write_report_card(tmp_path / "new", summary).read_text()
    assert _body(report)[0] == f"**{summary['verdict']}**"
    assert "No student was validated." in report
    assert not list((tmp_path / "new").glob("*.png"))


def test_bad_summaries_are_refused(tmp_path):
    with pytest.raises(ReportCardError, match="verdict"):
        write_report_card(tmp_path, {"met": True})
    with pytest.raises(ReportCardError, match="validation"):
        write_report_card(tmp_path, {"verdict": "MET", "validation": [1, 2]})
    assert not (tmp_path / "report.md").exists()
