"""``compress``: the whole pipeline on a tiny teacher, resumption, and bad input."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from macelerate import load
from macelerate.cli.__main__ import main
from macelerate.data.labels import LabelKeys
from macelerate.errors import UnknownElementError
from macelerate.models.checkpoint import make_provenance
from macelerate.models.saving import save_model
from macelerate.pipeline import compress as compress_module
from macelerate.pipeline import selection
from macelerate.pipeline.compress import compress
from macelerate.pipeline.config import CompressConfig, CompressConfigError, SamplingConfig
from macelerate.pipeline.ladder import Candidate
from macelerate.pipeline.sampling import segment
from macelerate.pipeline.state import CompressStateError
from macelerate.testing import tiny_mace
from tests.train import one_torch_thread  # noqa: F401  (autouse fixture)

TINY = {"r_max": 3.5, "max_ell": 1, "num_interactions": 1, "smooth_cap": True,
        "max_neighbors": 6, "confidence_head": True, "radial_mlp": (8,), "max_L": 0}  # fmt: skip
CANDIDATES = [
    Candidate("tiny-4ch", {**TINY, "channels": 4, "correlation": 1}),
    Candidate("tiny-8ch", {**TINY, "channels": 8, "correlation": 2}),
]
CONFIG = CompressConfig(
    target_speedup=None, max_force_error_ratio=50.0, budget_minutes=0.4, timing_repeats=2,
    validation_md_steps=8, batch_size=4, patience=3,
    sampling=SamplingConfig(temperatures=(300.0,), md_steps=80, interval=4, n_rattled=2,
                            n_strained=2),
)  # fmt: skip


def silicon() -> Atoms:
    return bulk("Si", "diamond", a=5.43, cubic=True)


def dft_like(n: int) -> list[Atoms]:
    """Rattled silicon cells labelled by another random model (stand-in for DFT labels)."""
    labeller = load(tiny_mace([14], seed=7, r_max=3.5), dtype="float64")
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(n):
        atoms = silicon()
        atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
        p = labeller.predict(atoms)
        atoms.calc = SinglePointCalculator(atoms, energy=float(p.energy[0]), forces=p.forces)
        frames.append(atoms)
    return frames


@pytest.fixture(scope="module")
def teacher():
    return load(tiny_mace([14], seed=1, r_max=3.5), dtype="float64")


@pytest.fixture(scope="module")
def run(teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("compress")
    start = silicon()
    before = start.positions.copy()
    result = compress(teacher, [start], out, config=CONFIG, reference=dft_like(6),
                      candidates=CANDIDATES, progress=False)  # fmt: skip
    assert np.array_equal(start.positions, before)  # the start structure is not modified
    return result


def test_segments_are_consecutive_and_separated_by_the_gap():
    snapshots = list(range(20))
    train, val, test = segment(snapshots, (0.7, 0.15, 0.15), gap=1)
    assert train == list(range(14)) and val == [15, 16] and test == [18, 19]


def test_the_pipeline_writes_a_validated_student_and_a_report_card(run):
    summary = run.summary
    assert run.chosen in {c.name for c in CANDIDATES}
    assert run.student_path is not None and run.student_path.is_file()
    assert summary["splits"]["val"] == 2 and summary["splits"]["test"] == 2
    assert summary["splits"]["train"] == 14 + 2 + 2  # MD segment + rattled + strained
    ladder = {row["name"]: row for row in summary["ladder"]}
    assert set(ladder) == {c.name for c in CANDIDATES}
    assert all(row["ms_per_step"] > 0 and row["speedup"] > 0 for row in ladder.values())
    # with an accuracy target, the fastest candidate is trained first
    fastest = max(ladder.values(), key=lambda row: row["speedup"])
    assert fastest["trained"] and fastest["selection_force_ratio"] > 0
    validation = summary["validation"]
    assert validation["force_error_ratio"] > 0
    assert np.isfinite(validation["vs_teacher"]["force_rmse_mev_per_a"])
    report = (run.out / "report.md").read_text()
    verdict_line = next(line for line in report.splitlines()[1:] if line.strip())
    assert run.verdict in verdict_line
    assert json.loads((run.out / "summary.json").read_text())["verdict"] == run.verdict
    assert run.met == all(check["met"] for check in summary["checks"].values())
    student = load(run.student_path)
    assert np.isfinite(student.predict(silicon()).forces).all()


def test_the_chosen_student_is_exported_for_metatomic_engines(run):
    metatomic = run.summary["export"]["metatomic"]
    if importlib.util.find_spec("metatomic_ase") is None:
        assert metatomic["file"] is None and "pip install metatomic" in metatomic["skipped"]
        return
    assert metatomic["file"] == "student_metatomic.pt" == run.summary["files"]["metatomic"]
    assert (run.out / metatomic["file"]).is_file()
    assert metatomic["dtype"] == "float32" and metatomic["max_abs_force_diff_eV_per_A"] <= 1e-3
    assert any("smooth neighbour cap of 6" in change for change in metatomic["changes"])
    assert "metatomic export" in (run.out / "report.md").read_text()


def test_a_finished_run_is_not_repeated(run, teacher, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(compress_module, "train_candidate", refuse)
    monkeypatch.setattr(compress_module, "measure_ladder", refuse)
    monkeypatch.setattr("macelerate.pipeline.sampling.run_md", refuse)
    again = compress(teacher, [silicon()], run.out, config=CONFIG, reference=dft_like(6),
                     candidates=CANDIDATES, progress=False)  # fmt: skip
    assert again.verdict == run.verdict and again.chosen == run.chosen


def test_a_run_killed_while_training_continues(teacher, tmp_path, monkeypatch):
    config = replace(CONFIG, max_force_error_ratio=None, max_force_rmse_mev=1e9)
    original = selection.train_candidate

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compress_module, "train_candidate", killed)
    with pytest.raises(KeyboardInterrupt):
        compress(teacher, [silicon()], tmp_path, config=config, candidates=CANDIDATES,
                 progress=False)  # fmt: skip
    state = json.loads((tmp_path / "compress.json").read_text())
    assert {"sample", "label", "ladder", "candidates"} <= set(state["stages"])
    assert "train_config" in next(iter(state["stages"]["candidates"].values()))
    monkeypatch.setattr(compress_module, "train_candidate", original)
    monkeypatch.setattr("macelerate.pipeline.sampling.run_md", killed)  # trajectories are kept
    result = compress(teacher, [silicon()], tmp_path, config=config, candidates=CANDIDATES,
                      progress=False)  # fmt: skip
    assert result.met and result.verdict.startswith("MET")


def test_another_run_in_the_same_folder_is_refused(run, teacher):
    other = replace(CONFIG, seed=1)
    with pytest.raises(CompressStateError, match="other inputs or settings"):
        compress(teacher, [silicon()], run.out, config=other, reference=dft_like(6),
                 candidates=CANDIDATES, progress=False)  # fmt: skip


def test_bad_input_fails_before_any_slow_work(teacher, tmp_path):
    oxygen = silicon()
    oxygen.numbers[0] = 8
    with pytest.raises(UnknownElementError):
        compress(teacher, [oxygen], tmp_path / "a", config=CONFIG, candidates=CANDIDATES,
                 progress=False)  # fmt: skip
    assert not (tmp_path / "a" / "compress.json").exists()
    with pytest.raises(CompressConfigError, match="--reference-data"):
        compress(teacher, [silicon()], tmp_path / "b", config=CONFIG, candidates=CANDIDATES,
                 progress=False)  # fmt: skip
    unlabelled = [silicon(), silicon()]
    with pytest.raises(Exception, match="energy"):
        compress(teacher, [silicon()], tmp_path / "c", config=CONFIG, reference=unlabelled,
                 reference_keys=LabelKeys(), progress=False)  # fmt: skip
    with pytest.raises(CompressConfigError, match="no target"):
        CompressConfig(target_speedup=None)


def test_cli_reports_an_unreachable_target_honestly(tmp_path, capsys):
    model = tmp_path / "teacher.pt"
    save_model(model, tiny_mace([14], seed=1, r_max=3.5), provenance=make_provenance("test"))
    start = tmp_path / "start.xyz"
    ase.io.write(start, silicon())
    args = ["compress", str(model), "--structures", str(start), "--out", str(tmp_path / "out"),
            "--target-speedup", "1000", "--budget-minutes", "0.25", "--timing-repeats", "1",
            "--temperatures", "300",
            "--md-steps", "40", "--interval", "2", "--validation-steps", "4",
            "--no-progress"]  # fmt: skip
    assert main(args) == 1  # a model is written, but the target is not met: exit 1
    out = capsys.readouterr().out
    assert "NOT MET (speedup" in out and "report.md" in out
    assert (tmp_path / "out" / "student.pt").is_file()
