"""``train``/``distill``/``label`` refuse bad runs with one line and exit 2, and write nothing bad.

Covers: divergence (``--lr 1e4``), NaN/string/misshapen labels, an existing training state,
impossible arguments, ASE index syntax, the closing validation line, the positional model, help
texts with defaults, and progress bars.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.io import write

from macelerate.cli.__main__ import build_parser, main
from macelerate.data.labels import LabelKeys, read_structures
from macelerate.evaluate import evaluate
from macelerate.models.loading import load
from tests.train import ethanols, one_torch_thread  # noqa: F401  (autouse fixture)

QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, tiny_model_file):
    """Six ethanols labelled by the tiny model under ``REF_energy``/``REF_forces``, plus a string
    label ``name`` and a per-atom array ``q``."""
    teacher = load(tiny_model_file)
    structures = ethanols(6, seed=3)
    for atoms in structures:
        prediction = teacher.predict(atoms)
        atoms.info["REF_energy"] = float(prediction.energy[0])
        atoms.info["name"] = "ethanol"
        atoms.arrays["REF_forces"] = prediction.forces
        atoms.arrays["q"] = np.zeros(len(atoms))
    path = tmp_path_factory.mktemp("data") / "data.xyz"
    write(path, structures)
    return path


def _train(model, data, out, *extra: str) -> list[str]:
    keys = ["--energy-key", "REF_energy", "--forces-key", "REF_forces"]
    return ["train", str(model), "--data", str(data), "--out", str(out), *keys,
            "--batch-size", "2", *QUIET, *extra]  # fmt: skip


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def test_divergence_exits_2_and_keeps_the_previous_model(tiny_model_file, data_file, tmp_path,
                                                         capsys):  # fmt: skip
    out = tmp_path / "model.pt"
    out.write_bytes(b"previous model")
    args = _train(tiny_model_file, data_file, out, "--lr", "1e4", "--epochs", "5",
                  "--max-bad-batches", "2")  # fmt: skip
    assert main(args) == 2
    _one_line_error(capsys, "training stopped: 2 batches had a NaN/inf loss or gradient",
                    "lower the learning rate (--lr)")  # fmt: skip
    assert out.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_finite_but_exploded_weights_are_not_written(tiny_model_file, tmp_path, capsys):
    """Random labels and a huge learning rate: finite loss and gradients but weights so large
    that the model's predictions overflow; the run must not write that model."""
    rng = np.random.default_rng(0)
    structures = ethanols(8, seed=0)
    for atoms in structures:
        atoms.info["E"] = float(rng.normal())
        atoms.arrays["F"] = rng.normal(size=(len(atoms), 3))
    data = tmp_path / "random.xyz"
    write(data, structures)
    out = tmp_path / "model.pt"
    args = ["train", str(tiny_model_file), "--data", str(data), "--out", str(out),
            "--energy-key", "E", "--forces-key", "F", "--lr", "1e4", "--epochs", "3",
            *QUIET]  # fmt: skip
    assert main(args) == 2
    _one_line_error(capsys, "training diverged", "not finite", "lower the learning rate")
    assert not out.exists()


def test_a_nan_label_is_rejected_naming_the_frame(tiny_model_file, tmp_path, capsys):
    frames = ethanols(3)
    for i, atoms in enumerate(frames):
        atoms.info["REF_energy"] = float("nan") if i == 2 else -10.3 - 0.1 * i
        atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
    write(tmp_path / "nan.xyz", frames)
    assert main(_train(tiny_model_file, tmp_path / "nan.xyz", tmp_path / "x.pt")) == 2
    _one_line_error(capsys, "structure 2 label 'REF_energy' holds 1 NaN/inf value(s)")
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (["--energy-key", "name"], ["label 'name' is not numeric ('ethanol')"]),
        (["--forces-key", "q"], ["label 'q' has shape (9,); forces must be [9, 3]"]),
        (["--energy-key", "REF_forces"], ["an energy label is one number per structure"]),
        (["--epochs", "0"], ["epochs (--epochs) must be an integer >= 1, got 0"]),
        (["--batch-size", "0"], ["batch_size (--batch-size) must be an integer >= 1, got 0"]),
        (["--val-fraction", "1.0"], ["val_fraction (--val-fraction) must be in [0, 1)"]),
        (["--ema-decay", "1.0"], ["ema_decay (--ema-decay) must be in [0, 1)"]),
        (["--lr", "-1"], ["lr (--lr) must be a finite number > 0, got -1.0"]),
        (["--max-steps", "0"], ["max_steps (--max-steps)"]),
        (["--forces-weight", "-1"], ["loss weight forces must be a finite number >= 0"]),
        (["--resume"], ["resume needs checkpoint_path: pass --checkpoint STATE"]),
    ],
)
def test_bad_arguments_and_labels_exit_2_with_one_line(
    tiny_model_file, data_file, tmp_path, capsys, options, needles
):
    out = tmp_path / "x.pt"
    assert main(_train(tiny_model_file, data_file, out, *options)) == 2
    _one_line_error(capsys, "macelerate train: error: ", *needles)
    assert not out.exists()


def test_integer_energy_labels_warn_but_train(tiny_model_file, tmp_path, capsys):
    frames = ethanols(3)
    for i, atoms in enumerate(frames):
        atoms.info["md_step"] = 10 * i  # a count, not an energy
        atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
    write(tmp_path / "steps.xyz", frames)
    args = _train(tiny_model_file, tmp_path / "steps.xyz", tmp_path / "x.pt", "--energy-key",
                  "md_step", "--epochs", "1", "--max-steps", "1")  # fmt: skip
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "macelerate train: warning: " in err  # one line, the CLI's own format
    assert "every 'md_step' label is a whole number" in err


def test_eval_with_a_string_label_exits_2(tiny_model_file, data_file, capsys):
    args = ["eval", str(tiny_model_file), "--data", str(data_file), "--energy-key", "name",
            "--forces-key", "REF_forces"]  # fmt: skip
    assert main(args) == 2
    _one_line_error(capsys, "label 'name' is not numeric")


def test_an_existing_state_is_never_overwritten_without_resume(
    tiny_model_file, data_file, tmp_path, capsys
):
    state = tmp_path / "state.pt"
    state.write_bytes(b"earlier run")
    args = _train(tiny_model_file, data_file, tmp_path / "x.pt", "--checkpoint", str(state))
    assert main(args) == 2
    _one_line_error(capsys, f"training state {state} already exists", "pass --resume")
    assert state.read_bytes() == b"earlier run"
    distill = ["distill", str(tiny_model_file), "--data", str(data_file), "--out",
               str(tmp_path / "s.pt"), "--checkpoint", str(state), *QUIET]  # fmt: skip
    assert main(distill) == 2
    _one_line_error(capsys, "macelerate distill: error: training state")
    args = _train(tiny_model_file, data_file, tmp_path / "x.pt", "--checkpoint",
                  str(tmp_path / "none.pt"), "--resume")  # fmt: skip
    assert main(args) == 2
    _one_line_error(capsys, "does not exist, so there is nothing to resume")


def test_closing_line_validates_the_written_model(tiny_model_file, data_file, tmp_path, capsys):
    out, report = tmp_path / "tuned.pt", tmp_path / "report.json"
    val = tmp_path / "val.xyz"
    write(val, read_structures(f"{data_file}@4:"))
    # 4 structures, batch 2: epoch 1 ends at step 2; the run stops at step 3 (mid epoch 2)
    args = _train(tiny_model_file, f"{data_file}@:4", out, "--val", str(val), "--epochs", "3",
                  "--max-steps", "3", "--lr", "1e-3", "--json", str(report))  # fmt: skip
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(text for text in lines if text.startswith("validation"))
    assert "of the written model (2 structures, averaged (EMA) weights, step 3)" in line
    keys = LabelKeys(energy="REF_energy", forces="REF_forces")
    written = evaluate(load(out), read_structures(val), keys=keys)
    assert f"F RMSE {written.force_rmse:.1f} meV/Å" in line
    assert f"E RMSE {written.energy_rmse:.2f} meV/atom" in line
    final = json.loads(report.read_text())["final_validation"]
    assert final["step"] == 3 and final["val_forces_rmse"] == pytest.approx(written.force_rmse)


def test_model_is_positional_and_model_option_still_works(
    tiny_model_file, data_file, tmp_path, capsys
):
    base = ["train", "--data", f"{data_file}@:3", "--energy-key", "REF_energy", "--forces-key",
            "REF_forces", "--epochs", "1", "--max-steps", "1", *QUIET]  # fmt: skip
    assert main([*base, "--model", str(tiny_model_file), "--out", str(tmp_path / "a.pt")]) == 0
    assert main([*base, str(tiny_model_file), "--out", str(tmp_path / "b.pt")]) == 0
    assert main([*base, "--out", str(tmp_path / "c.pt")]) == 2
    _one_line_error(capsys, "no model given: macelerate train MODEL_OR_CONFIG")
    assert main([*base, "other.model", "--model", str(tiny_model_file), "--out", "c.pt"]) == 2
    _one_line_error(capsys, "two models given")


def test_bad_structure_index_exits_2(tiny_model_file, data_file, tmp_path, capsys):
    assert main(_train(tiny_model_file, f"{data_file}@9", tmp_path / "x.pt")) == 2
    _one_line_error(capsys, "structure index 9 is out of range", "holds 6 structures")
    assert main(_train(tiny_model_file, f"{data_file}@a:b", tmp_path / "x.pt")) == 2
    _one_line_error(capsys, "bad structure index 'a:b'")
    assert main(_train(tiny_model_file, tmp_path / "nope.xyz@:3", tmp_path / "x.pt")) == 2
    _one_line_error(capsys, "nope.xyz does not exist")


def _subparser(name: str):
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return action.choices[name]


@pytest.mark.parametrize("command", ["train", "distill", "label"])
def test_every_option_has_help_and_help_shows_defaults(command, capsys):
    for action in _subparser(command)._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    expected = {"train": "training precision (default: float64)",
                "distill": "training precision (default: float32)",
                "label": "MD steps per temperature (default: 200)"}  # fmt: skip
    assert expected[command] in text
    if command != "label":
        assert "(default: 10)" in text and "--max-bad-batches" in text


def test_label_md_shows_progress_unless_silenced(tiny_model_file, tmp_path, capsys):
    start = tmp_path / "start.xyz"
    write(start, ethanols(2))
    args = [
        "label",
        str(tiny_model_file),
        "--md",
        f"{start}@-1",
        "--temperatures",
        "300",
        "--steps",
        "2",
        "--interval",
        "1",
        "--rattled",
        "1",
        "--out",
        str(tmp_path / "o.xyz"),
    ]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "teacher MD" in err and "label" in err
    assert main([*args, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""
    assert len(read_structures(tmp_path / "o.xyz")) == 2 + 1  # one start: 2 snapshots + 1 rattled
    assert main([*args[:-2], "--interval", "0", "--out", str(tmp_path / "p.xyz")]) == 2
    _one_line_error(capsys, "--interval must be >= 1, got 0")


def test_distill_rejects_impossible_architectures(tiny_model_file, data_file, tmp_path, capsys):
    args = ["distill", str(tiny_model_file), "--data", str(data_file), "--out",
            str(tmp_path / "s.pt"), "--channels", "0", *QUIET]  # fmt: skip
    assert main(args) == 2
    _one_line_error(capsys, "--channels must be >= 1, got 0")
