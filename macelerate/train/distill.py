"""Distillation: a teacher Potential -> a fast :class:`~macelerate.models.student.Student`.

The student inherits what makes the teacher's energies comparable (elements, reference energies
E0, interaction scale and shift); its average neighbour count is measured on the training
structures with the student's own cutoff and caps. Training is :func:`macelerate.train.train`
with the teacher's predictions as targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import numpy as np
import torch
from ase import Atoms

from macelerate.data.labels import LabelKeys
from macelerate.models.potential import Potential
from macelerate.models.student import Student, StudentConfig, StudentError, build_student
from macelerate.train.config import TrainConfig, TrainReport
from macelerate.train.loop import train


def teacher_constants(teacher: Potential) -> dict[str, Any]:
    """E0 per element, interaction scale and shift of a mace-torch teacher (defaults if absent)."""
    model = getattr(teacher.model, "backbone", teacher.model)
    energies = getattr(getattr(model, "atomic_energies_fn", None), "atomic_energies", None)
    if energies is None:
        e0 = tuple(0.0 for _ in teacher.atomic_numbers)
    else:
        table = energies.detach().double().reshape(-1, len(teacher.atomic_numbers))
        e0 = tuple(float(e) for e in table[0])  # the first head's E0
    scale_shift = getattr(model, "scale_shift", None)
    scale = float(scale_shift.scale.reshape(-1)[0]) if scale_shift is not None else 1.0
    shift = float(scale_shift.shift.reshape(-1)[0]) if scale_shift is not None else 0.0
    return {"atomic_energies": e0, "atomic_inter_scale": scale, "atomic_inter_shift": shift}


def mean_neighbors(config: StudentConfig, structures: Sequence[Atoms]) -> float:
    """Average in-degree of the student's graphs (cutoff and caps applied) on ``structures``."""
    probe = build_student(replace(config, dtype="float64"))
    degrees = []
    for atoms in structures[:20]:
        graph = probe.build_graph(atoms)
        degrees.append(graph["edge_index"].shape[1] / max(len(atoms), 1))
    return float(np.mean(degrees)) if degrees else config.avg_num_neighbors


def student_config_for(
    teacher: Potential, structures: Sequence[Atoms], **architecture: Any
) -> StudentConfig:
    """A :class:`StudentConfig` for ``teacher``'s elements and energy reference.

    Args:
        teacher: the model to distil.
        structures: training structures (for the average neighbour count).
        **architecture: any StudentConfig field (channels, max_L, max_ell, r_max, caps, heads...).
    """
    options = {"atomic_numbers": tuple(teacher.atomic_numbers), **teacher_constants(teacher)}
    options.update(architecture)
    config = StudentConfig(**options)
    return replace(config, avg_num_neighbors=mean_neighbors(config, structures))


def student_from_init(
    config: StudentConfig, source: Student, *, seed: int = 0
) -> tuple[Student, dict[str, Any]]:
    """A new student of architecture ``config`` that starts from ``source``'s weights.

    Every weight whose name and shape match is copied (the backbone, and heads both have); the
    rest (new heads) starts from seeded initial values. ``source`` is not changed. Used to put a
    direct-force head on a trained conservative student, which then acts as an intermediate
    teacher of the backbone.

    Raises:
        StudentError: a backbone weight of the new architecture is missing from ``source`` or
            has another shape (the backbones must be the same).
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        student = build_student(config)
    state = student.state_dict()
    source_state = source.state_dict()
    mismatched = [
        name
        for name, tensor in state.items()
        if name.startswith("backbone.")
        and (name not in source_state or source_state[name].shape != tensor.shape)
    ]
    if mismatched:
        raise StudentError(
            f"the student to start from has another backbone ({len(mismatched)} weights differ, "
            f"e.g. {mismatched[:3]}); give the same --channels/--max-L/--correlation/... as it"
        )
    copied = [name for name in state if name in source_state]
    for name in copied:
        state[name] = source_state[name].to(state[name].dtype).clone()
    student.load_state_dict(state)
    fresh = sorted({name.split(".")[0] for name in state if name not in source_state})
    return student, {"copied_tensors": len(copied), "fresh_parts": fresh}


def distill(
    teacher: Potential,
    structures: Sequence[Atoms],
    *,
    student: StudentConfig | Student,
    config: TrainConfig,
    val_structures: Sequence[Atoms] | None = None,
    keys: LabelKeys | None = None,
    seed: int = 0,
) -> tuple[Student, TrainReport]:
    """Train a student on ``teacher``'s energies, forces (stress, Hessian rows) on ``structures``.

    Args:
        teacher: the teacher (labels are its predictions; ``config.teacher_weight < 1`` mixes in
            the structures' own labels).
        structures: configurations to label and train on.
        student: an architecture (built with seeded weights) or a student to continue.
        config: training settings (losses, epochs, EMA, checkpointing...).
        val_structures: validation configurations (default: a split of ``structures``).
        keys: the structures' own label names (used when ``config.teacher_weight < 1``).
        seed: seed of the student's initial weights.
    """
    if isinstance(student, StudentConfig):
        with torch.random.fork_rng():  # seeded initial weights; the global RNG is restored
            torch.manual_seed(seed)
            student = build_student(student)
    trained, report = train(
        student,
        structures,
        config=config,
        val_structures=val_structures,
        keys=keys,
        teacher=teacher,
    )
    return cast(Student, trained), report  # train returns a trained copy of its model's class
