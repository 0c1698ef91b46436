"""Training the ladder's candidates inside a time budget, and the order in which to try them.

Policy (:func:`training_order`):

- with an accuracy target, candidates fast enough for the speed target (all of them without
  one) are trained fastest first, and the first that meets the accuracy target on the
  validation data wins: the fastest student that is accurate enough;
- with a speed target alone, the slowest candidate that is still fast enough (the largest, so
  the most accurate one can expect) is trained with the whole budget;
- if no candidate is fast enough, the fastest is trained so the user gets the best model there
  is, and the verdict says the speed target was not met.

Each candidate's training is resumable (its state file lives in its folder) and its length is
set from a measured step time so that the cosine schedule ends inside its share of the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from ase import Atoms

from macelerate.data.labels import LabelKeys
from macelerate.pipeline.config import CompressConfig
from macelerate.train.config import TrainConfig
from macelerate.train.losses import LossWeights

PROBE_STEPS = 4
"""Optimisation steps timed before a candidate's run to size its schedule."""


def fast_enough(record: dict[str, Any], config: CompressConfig) -> bool:
    """Whether a ladder record's measured speed-up meets the speed target (with margin)."""
    if config.target_speedup is None:
        return True
    return float(record["speedup"]) >= config.target_speedup * config.speed_margin


def training_order(ladder: Sequence[dict[str, Any]], config: CompressConfig) -> list[str]:
    """Names of the candidates to train, in order (see the module docstring)."""
    by_speed = sorted(ladder, key=lambda r: -float(r["speedup"]))
    eligible = [r for r in by_speed if fast_enough(r, config)]
    if not eligible:
        return [by_speed[0]["name"]] if by_speed else []
    if config.accuracy_target is None:
        return [eligible[-1]["name"]]
    return [r["name"] for r in eligible]


def label_keys(structures: Sequence[Atoms]) -> LabelKeys:
    """Teacher label names: energy, forces, and stress when every structure is periodic."""
    periodic = all(atoms.pbc.all() for atoms in structures)
    return LabelKeys(energy="energy", forces="forces", stress="stress" if periodic else None)


def base_train_config(config: CompressConfig, state_path: Path) -> TrainConfig:
    """Settings shared by every candidate (MSE loss, EMA, cosine, float32, early stopping)."""
    return TrainConfig(
        epochs=1, batch_size=config.batch_size, lr=config.lr, schedule="cosine",
        ema_decay=0.99, loss=LossWeights(huber_delta=None), seed=config.seed, dtype="float32",
        checkpoint_path=str(state_path), checkpoint_every=50,
        early_stop_patience=config.patience, progress=True,
    )  # fmt: skip


def sized_epochs(seconds_per_step: float, budget_seconds: float, n_train: int, batch: int) -> int:
    """Epochs whose steps fill ``budget_seconds`` (90 %, leaving room for validation)."""
    steps_per_epoch = math.ceil(n_train / batch)
    steps = 0.9 * budget_seconds / max(seconds_per_step, 1e-6)
    return max(1, int(steps // steps_per_epoch))


def _student(architecture: dict[str, Any], seed: int) -> torch.nn.Module:
    from macelerate.models.student import StudentConfig, build_student

    student_config = replace(StudentConfig.from_dict(architecture), dtype="float32")
    with torch.random.fork_rng():  # seeded initial weights; the global RNG is restored
        torch.manual_seed(seed)
        return build_student(student_config)


def plan_training(
    architecture: dict[str, Any],
    train: Sequence[Atoms],
    val: Sequence[Atoms],
    *,
    folder: Path,
    config: CompressConfig,
    budget_seconds: float,
) -> TrainConfig:
    """A candidate's TrainConfig: ``PROBE_STEPS`` timed steps size its epochs to the budget."""
    from macelerate.train.loop import train as run_training

    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.pt"
    state_path.unlink(missing_ok=True)  # left by a run killed before its plan was recorded
    base = base_train_config(config, state_path)
    probe = replace(base, max_steps=PROBE_STEPS, checkpoint_path=None, checkpoint_every=None,
                    early_stop_patience=None, progress=False)  # fmt: skip
    started = time.perf_counter()
    _, report = run_training(_student(architecture, config.seed), train, config=probe,
                             val_structures=val[:1], keys=label_keys([*train, *val]))  # fmt: skip
    left = budget_seconds - (time.perf_counter() - started)
    epochs = sized_epochs(report.seconds_per_step, left, len(train), config.batch_size)
    return replace(base, epochs=epochs)


def train_candidate(
    architecture: dict[str, Any],
    train: Sequence[Atoms],
    val: Sequence[Atoms],
    *,
    train_config: TrainConfig,
    budget_seconds: float,
    seed: int,
    progress: bool,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train one candidate on teacher-labelled ``train``/``val``, resuming its state file if a
    killed run left one.

    Returns:
        The trained student (float32, EMA weights) and a record: ``steps``, ``epochs_planned``,
        ``seconds``, ``seconds_per_step``, ``stop_reason``, ``n_parameters``,
        ``val_forces_rmse_mev``, ``val_energy_rmse_mev``.
    """
    from macelerate.train.loop import train as run_training

    resume = (
        bool(train_config.checkpoint_path) and Path(str(train_config.checkpoint_path)).is_file()
    )
    run_config = replace(train_config, resume=resume, progress=progress,
                         max_seconds=max(budget_seconds, 1.0))  # fmt: skip
    trained, report = run_training(_student(architecture, seed), train, config=run_config,
                                   val_structures=val, keys=label_keys([*train, *val]))  # fmt: skip
    final = report.final_validation or {}
    record = {
        "steps": report.steps,
        "epochs_planned": train_config.epochs,
        "seconds": report.seconds,
        "seconds_per_step": report.seconds_per_step,
        "stop_reason": report.stop_reason,
        "n_parameters": report.n_parameters,
        "val_forces_rmse_mev": final.get("val_forces_rmse"),
        "val_energy_rmse_mev": final.get("val_energy_rmse"),
    }
    return trained, record
