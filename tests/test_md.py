"""MD: blow-ups stop with one error naming the step and cause; trajectories are never destroyed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase import Atoms, units
from ase.io import read, write

from macelerate.calculator import Calculator
from macelerate.cli.__main__ import main
from macelerate.errors import MDInstabilityError, StructureError
from macelerate.md import MDConfig, partial_path, run_md, suggested_timestep_fs


def _old_file(path, ethanol):
    """An existing trajectory the next run must not destroy."""
    write(path, [ethanol, ethanol])
    return path.read_bytes()


def test_too_large_a_time_step_stops_with_the_step_and_the_cause(tiny_model, ethanol, tmp_path):
    out = tmp_path / "md.traj"
    before = _old_file(out, ethanol)
    ethanol.calc = Calculator(tiny_model)
    config = MDConfig(steps=100, timestep_fs=10.0, trajectory=str(out), write_every=1)
    with pytest.raises(MDInstabilityError) as error:
        run_md(ethanol, config, progress=False)
    message = str(error.value)
    assert f"MD blew up at step {error.value.step} of 100" in message
    assert "the temperature reached" in message
    assert "time step of 10 fs is too large" in message and "0.5 fs" in message
    assert "fix the geometry" not in message
    assert str(partial_path(out)) in message
    assert out.read_bytes() == before  # the previous file is untouched
    frames = read(partial_path(out), ":")  # the run so far is kept
    assert len(frames) == error.value.step + 1
    assert error.value.result.temperature.shape == (error.value.step + 1,)


def test_atoms_pushed_into_each_other_are_a_blow_up_not_bad_input(tiny_model):
    """Two carbons flying at each other overlap after one 10 fs step."""
    atoms = Atoms("C2", positions=[[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
    atoms.set_velocities(np.array([[0.07, 0.0, 0.0], [-0.07, 0.0, 0.0]]) / units.fs)  # 0.07 Å/fs
    atoms.calc = Calculator(tiny_model)
    with pytest.raises(MDInstabilityError, match="step 1 of 5") as error:
        run_md(atoms, MDConfig(steps=5, timestep_fs=10.0), progress=False)
    message = str(error.value)
    assert "overlapping atoms 0 and 1" in message and "fix the geometry" not in message
    assert "too large for this system" in message


def test_a_completed_run_replaces_the_trajectory(tiny_model, silicon, ethanol, tmp_path):
    out = tmp_path / "md.traj"
    _old_file(out, ethanol)
    silicon.calc = Calculator(tiny_model)
    run_md(silicon, MDConfig(steps=4, timestep_fs=1.0, trajectory=str(out), write_every=2),
           progress=False)  # fmt: skip
    assert [len(frame) for frame in read(out, ":")] == [8, 8, 8]  # steps 0, 2, 4
    assert not partial_path(out).exists()


def test_a_single_atom_is_refused_with_the_reason(tiny_model):
    atoms = Atoms("C", positions=[[0.0, 0.0, 0.0]])
    atoms.calc = Calculator(tiny_model)
    with pytest.raises(StructureError, match="at least 2 atoms.*no temperature") as error:
        run_md(atoms, MDConfig(steps=3), progress=False)
    assert "NaN" not in str(error.value)


class _SlowFirstStep(Calculator):
    """Sleeps 0.3 s in its second model call: the first MD step (the first is step 0's forces)."""

    calls = 0

    def calculate(self, *args, **kwargs):
        type(self).calls += 1
        if type(self).calls == 2:
            time.sleep(0.3)
        super().calculate(*args, **kwargs)


def test_speed_leaves_out_the_first_step(tiny_model, silicon):
    silicon.calc = _SlowFirstStep(tiny_model)
    result = run_md(silicon, MDConfig(steps=4, timestep_fs=1.0), progress=False)
    assert result.first_step_seconds >= 0.3
    # the rate is that of the 3 steps after the first, not 4 / (all the time)
    rest = result.seconds - result.first_step_seconds
    assert result.steps_per_second == pytest.approx(3 / rest, rel=0.05)
    assert result.seconds >= 0.3


def test_suggested_time_steps(ethanol, silicon):
    assert suggested_timestep_fs(ethanol) == 0.5  # hydrogen
    assert suggested_timestep_fs(silicon) == 1.0
    assert suggested_timestep_fs(Atoms("Sb2")) == 2.0


def test_cli_keeps_the_previous_trajectory_on_a_blow_up(tiny_model_file, ethanol, tmp_path,
                                                         capsys):  # fmt: skip
    structure = tmp_path / "ethanol.xyz"
    write(structure, ethanol)
    out = tmp_path / "md.traj"
    before = _old_file(out, ethanol)
    args = ["md", str(tiny_model_file), str(structure), "--timestep", "10", "--trajectory",
            str(out), "--write-every", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "MD blew up at step" in err and "--timestep" not in err
    assert out.read_bytes() == before and len(read(partial_path(out), ":")) > 1


def test_cli_bad_structure_leaves_the_trajectory_alone(tiny_model_file, ethanol, tmp_path,
                                                       capsys):  # fmt: skip
    gold = ethanol.copy()
    gold.numbers[0] = 79
    structure = tmp_path / "gold.xyz"
    write(structure, gold)
    out = tmp_path / "md.traj"
    before = _old_file(out, ethanol)
    assert main(["md", str(tiny_model_file), str(structure), "--trajectory", str(out)]) == 2
    assert "Au (Z=79)" in capsys.readouterr().err
    assert out.read_bytes() == before and not partial_path(out).exists()


def test_cli_single_atom_and_speed_line(tiny_model_file, ethanol, tmp_path, capsys):
    lone = tmp_path / "lone.xyz"
    write(lone, Atoms("C", positions=[[0.0, 0.0, 0.0]]))
    assert main(["md", str(tiny_model_file), str(lone)]) == 2
    assert "MD needs at least 2 atoms" in capsys.readouterr().err
    structure = tmp_path / "ethanol.xyz"
    write(structure, ethanol)
    args = ["md", str(tiny_model_file), str(structure), "--steps", "3", "--timestep", "0.5",
            "--no-progress"]  # fmt: skip
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "ns/day (first step" in captured.out and "left out" in captured.out
    assert captured.err == ""  # --no-progress: no bar
    assert np.isfinite(float(captured.out.split(" steps/s")[0].split()[-1]))
