"""The cosine schedule: a function of the step; resuming with more epochs continues it."""

from __future__ import annotations

import pytest

from macelerate import load
from macelerate.testing import tiny_mace
from macelerate.train.loop import TrainConfig, train
from macelerate.train.schedule import CosineSchedule
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8]


def test_cosine_decays_from_peak_to_minimum_and_stays_there():
    schedule = CosineSchedule(peak=1e-2, minimum=1e-4, total_steps=10)
    rates = [schedule.lr(step) for step in range(14)]
    assert rates[0] == 1e-2 and rates[5] == pytest.approx(0.5 * (1e-2 + 1e-4))
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert rates[10:] == [pytest.approx(1e-4)] * 4  # never rises again (CosineAnnealingLR does)


def test_a_longer_total_continues_from_the_current_rate():
    schedule = CosineSchedule(peak=1e-2, minimum=1e-4, total_steps=10)
    longer = schedule.extended(total_steps=20, step=4)
    assert longer.lr(4) == pytest.approx(schedule.lr(4))  # no jump at the resume
    rates = [longer.lr(step) for step in range(4, 22)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))
    assert longer.lr(20) == pytest.approx(1e-4)
    assert schedule.extended(total_steps=10, step=4) is schedule  # same total: unchanged
    state = longer.state_dict()
    assert CosineSchedule.from_state(state, peak=1.0, minimum=0.0) == longer


def test_old_state_files_with_a_cosine_annealing_state_still_resume():
    old = {"T_max": 6, "eta_min": 1e-4, "base_lrs": [1e-2], "last_epoch": 3}
    schedule = CosineSchedule.from_state(old, peak=1e-2, minimum=1e-4)
    assert schedule == CosineSchedule(peak=1e-2, minimum=1e-4, total_steps=6)


def test_resuming_with_more_epochs_never_restarts_the_schedule(tmp_path):
    teacher = load(tiny_mace(ELEMENTS, seed=1), dtype="float64")
    structures = label_structures(teacher, ethanols(4))
    options = {"batch_size": 2, "lr": 1e-2, "val_fraction": 0.0, "progress": False}
    options["checkpoint_path"] = str(tmp_path / "state.pt")
    student = tiny_mace(ELEMENTS, seed=2)
    _, first = train(student, structures, config=TrainConfig(epochs=2, **options))
    _, resumed = train(student, structures, config=TrainConfig(epochs=4, resume=True, **options))
    rates = [record["lr"] for record in resumed.history]
    assert len(rates) == 4 and rates[:2] == [r["lr"] for r in first.history]
    # the old CosineAnnealingLR went 5e-3 -> 1e-4 -> 5e-3 -> 1e-2 here
    assert all(a >= b for a, b in zip(rates, rates[1:])), rates
    assert rates[-1] == pytest.approx(1e-4)
    assert resumed.steps == 8 and resumed.resumed_from_step == 4
