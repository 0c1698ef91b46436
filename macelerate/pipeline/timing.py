"""Speed of teacher and students on the user's structure, timed interleaved in one process."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from tqdm import tqdm

from macelerate._torch_state import num_threads
from macelerate.bench.timing import time_callable
from macelerate.models.loading import load
from macelerate.models.potential import Potential

SPEED_WARMUP = 2
"""Untimed energy+forces steps per model before the interleaved timing."""


@dataclass(frozen=True)
class SpeedComparison:
    """Time per energy+forces step (graph building included) on one structure.

    Attributes:
        teacher_ms: median ms per step of the teacher.
        student_ms: median ms per step of the student.
        speedup: ``teacher_ms / student_ms``.
        teacher_samples_ms: [repeats] every timed teacher step, in order.
        student_samples_ms: [repeats] every timed student step, in order.
        n_atoms: atoms in the timed structure.
        threads: torch CPU threads during the measurement.
        dtype: float dtype both models ran in.
        device: where they ran.
    """

    teacher_ms: float
    student_ms: float
    speedup: float
    teacher_samples_ms: tuple[float, ...]
    student_samples_ms: tuple[float, ...]
    n_atoms: int
    threads: int
    dtype: str
    device: str


def interleaved_ms(
    potentials: Sequence[Potential],
    atoms: Atoms,
    *,
    repeats: int = 7,
    warmup: int = SPEED_WARMUP,
    progress: bool = False,
    desc: str = "timing",
) -> list[list[float]]:
    """Milliseconds per energy + forces step of each potential on ``atoms``: [model][repeat].

    A step builds the graph and computes energy and forces (synchronised on GPUs). Rounds visit
    every potential once, so load changes on the machine hit all of them alike.
    """
    steps = [_step(potential, atoms) for potential in potentials]
    for step in steps:
        for _ in range(warmup):
            step()
    samples: list[list[float]] = [[] for _ in potentials]
    for _ in tqdm(range(repeats), desc=desc, unit="round", disable=not progress):
        for i, (potential, step) in enumerate(zip(potentials, steps)):
            gc.collect()
            timing = time_callable(step, warmup=0, repeats=1, device=potential.device)
            samples[i].append(timing.median_ms)
    return samples


def measure_speed(
    teacher: Potential,
    student: Potential,
    atoms: Atoms,
    *,
    dtype: str = "float32",
    repeats: int = 7,
    threads: int | None = None,
    progress: bool = False,
) -> SpeedComparison:
    """Median ms per energy+forces step of teacher and student, interleaved in one process.

    Both models are re-loaded in ``dtype`` on their own devices (the inputs are not changed),
    warmed up with :data:`SPEED_WARMUP` steps each, then timed alternately (teacher, student,
    teacher, ...) so that load changes on the machine hit both alike. A step builds the graph and
    computes energy and forces (:func:`~macelerate.bench.timing.time_callable`, synchronised).
    """
    models = {
        name: load(model, device=model.device, dtype=dtype, tune_allocator=False)
        for name, model in (("teacher", teacher), ("student", student))
    }
    with num_threads(threads) as used:
        timed = interleaved_ms(list(models.values()), atoms, repeats=repeats,
                               warmup=SPEED_WARMUP, progress=progress, desc="speed")  # fmt: skip
        samples = dict(zip(models, timed))
    teacher_ms, student_ms = (float(np.median(samples[name])) for name in models)
    return SpeedComparison(
        teacher_ms=teacher_ms, student_ms=student_ms, speedup=teacher_ms / student_ms,
        teacher_samples_ms=tuple(samples["teacher"]), student_samples_ms=tuple(samples["student"]),
        n_atoms=len(atoms), threads=used, dtype=dtype, device=str(teacher.device),
    )  # fmt: skip


def _step(potential: Potential, atoms: Atoms) -> Callable[[], object]:
    return lambda: potential.forward(potential.build_graph(atoms))
