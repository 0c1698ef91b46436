"""The student ladder of ``compress``: candidate architectures, timed on the user's structure.

The candidates come from what the distilled-student table in the README measured on GO: for an
L=0 teacher, L=0 students match it more cheaply than L=1 ones, and body order (correlation 3)
buys more than channels. Every candidate is MD-ready: conservative forces and a *smooth*
neighbour cap (energy continuous as neighbours swap rank), with a confidence head. Speeds are
measured, not guessed: untrained students (their speed does not depend on their weights) and
the teacher are timed interleaved in this process on the user's structure, energy + forces.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from ase import Atoms

from macelerate.models.potential import Potential
from macelerate.pipeline.timing import interleaved_ms


@dataclass(frozen=True)
class Candidate:
    """One student architecture: a name and :class:`~macelerate.models.student.StudentConfig`
    fields (on top of the teacher's elements and energy reference)."""

    name: str
    architecture: dict[str, Any] = field(default_factory=dict)


def teacher_max_l(teacher: Potential) -> int:
    """Largest L of the teacher's hidden node features (0 for an invariant-feature MACE)."""
    from macelerate.mace.config import describe_mace_model

    try:
        irreps = str(describe_mace_model(teacher.model)["hidden_irreps"])  # e.g. "16x0e+16x1o"
    except (KeyError, TypeError, ValueError, AttributeError):
        return 1  # not a plain mace model: include the L=1 rungs
    orders = [int(order) for order in re.findall(r"(\d+)[eo]\b", irreps)]
    return max(orders, default=1)


def default_ladder(teacher: Potential) -> list[Candidate]:
    """Candidate students for ``teacher``, roughly from fastest to slowest."""
    r_max = min(5.0, float(teacher.r_max))
    common = {"r_max": r_max, "max_ell": 2, "num_interactions": 2, "smooth_cap": True,
              "confidence_head": True, "radial_mlp": (32, 32)}  # fmt: skip
    rungs = [
        ("L0-16ch-nu2-k10", {"channels": 16, "max_L": 0, "correlation": 2, "max_neighbors": 10}),
        ("L0-32ch-nu2-k10", {"channels": 32, "max_L": 0, "correlation": 2, "max_neighbors": 10}),
        ("L0-32ch-nu3-k12", {"channels": 32, "max_L": 0, "correlation": 3, "max_neighbors": 12}),
        ("L0-48ch-nu3-k12", {"channels": 48, "max_L": 0, "correlation": 3, "max_neighbors": 12}),
        ("L0-64ch-nu3-k14", {"channels": 64, "max_L": 0, "correlation": 3, "max_neighbors": 14}),
    ]
    if teacher_max_l(teacher) > 0:
        rungs += [
            ("L1-16ch-nu2-k12", {"channels": 16, "max_L": 1, "correlation": 2,
                                 "max_neighbors": 12}),
            ("L1-32ch-nu3-k14", {"channels": 32, "max_L": 1, "correlation": 3,
                                 "max_neighbors": 14}),
        ]  # fmt: skip
    return [Candidate(name, {**common, **options}) for name, options in rungs]


def measure_ladder(
    teacher: Potential,
    candidates: Sequence[Candidate],
    structure: Atoms,
    train_structures: Sequence[Atoms],
    *,
    dtype: str = "float32",
    repeats: int = 7,
    threads: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Time the teacher and every (untrained) candidate on ``structure``.

    Returns one record per candidate: ``name``, ``architecture`` (the full StudentConfig as a
    dict, with the average neighbour count measured on ``train_structures``), ``ms_per_step``
    (median), ``ms_range``, ``teacher_ms_per_step`` and ``speedup`` (teacher / candidate), in
    the candidates' order.
    """
    from macelerate import load
    from macelerate._torch_state import num_threads
    from macelerate.models.student import build_student
    from macelerate.train.distill import student_config_for

    configs = [
        student_config_for(teacher, train_structures, **c.architecture, dtype="float64")
        for c in candidates
    ]
    with num_threads(threads), torch.random.fork_rng():
        torch.manual_seed(0)
        fast_teacher = load(teacher.model, dtype=dtype)
        students = [load(build_student(config), dtype=dtype) for config in configs]
        samples = interleaved_ms([fast_teacher, *students], structure, repeats=repeats,
                                 progress=progress, desc="ladder timing")  # fmt: skip
    teacher_ms = statistics.median(samples[0])
    records = []
    for candidate, config, times in zip(candidates, configs, samples[1:]):
        ms = statistics.median(times)
        records.append({
            "name": candidate.name,
            "architecture": config.to_dict(),
            "ms_per_step": ms,
            "ms_range": [min(times), max(times)],
            "teacher_ms_per_step": teacher_ms,
            "speedup": teacher_ms / ms,
        })  # fmt: skip
    return records
