"""Incremental structured pruning during training: prune a little, train, prune again.

A schedule of stages takes a MACE from its width down to the target: each stage removes the
least important (channel, L) blocks (:func:`macelerate.compress.prune`, scored on the current
weights), optionally whole convolution paths (:mod:`macelerate.compress.paths`, scored by the
force change their removal causes, per component they cost; removed paths stay zero while
training), and trains the smaller model for its share of the step budget. The result is a plain,
smaller mace-torch model; each stage's structural change gives measured speed, unlike
unstructured masks (:mod:`macelerate.train.sparsity`).

Resumable: with ``checkpoint_path`` P, stage ``i`` writes its training state to ``P.stage<i>``.
A resumed run redoes the (deterministic) pruning of every stage and resumes each stage's
training from its state file; finished stages only export their weights again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from ase import Atoms

from macelerate.compress import plain_mace_model, prune
from macelerate.compress.paths import (
    conv_paths,
    least_important_paths,
    path_ablation_scores,
    remove_conv_paths,
)
from macelerate.data.labels import LabelKeys
from macelerate.mace.config import describe_mace_model
from macelerate.mace.irreps import irreps_entries
from macelerate.train.config import TrainConfig
from macelerate.train.errors import TrainConfigError
from macelerate.train.loop import train


@dataclass(frozen=True)
class PruneStage:
    """One stage: prune to ``channels`` (and ``max_L``/``max_ell``), remove the
    ``remove_paths`` least important convolution paths, then train ``steps``."""

    channels: int
    steps: int
    max_L: int | None = None
    max_ell: int | None = None
    remove_paths: int = 0


def path_schedule(total: int, stages: int) -> list[int]:
    """Convolution paths to remove at each of ``stages`` stages, ``total`` in all, spread evenly
    (later stages take the remainder).

    >>> path_schedule(3, 2)
    [1, 2]
    """
    return [(total * i) // stages - (total * (i - 1)) // stages for i in range(1, stages + 1)]


def channel_schedule(start: int, end: int, stages: int) -> list[int]:
    """Geometric widths from ``start`` down to ``end`` in ``stages`` steps (multiples of 8 above
    16, strictly decreasing, the last one ``end``).

    >>> channel_schedule(128, 32, 3)
    [80, 48, 32]
    """
    if stages < 1 or not 1 <= end < start:
        raise TrainConfigError(
            f"a gradual pruning schedule needs stages >= 1 and 1 <= target channels < current "
            f"channels, got {stages} stages from {start} to {end} channels"
        )
    widths: list[int] = []
    for index in range(1, stages):
        width = start * (end / start) ** (index / stages)
        width = int(8 * round(width / 8)) if width > 16 else int(round(width))
        previous = widths[-1] if widths else start
        widths.append(max(min(width, previous - 1), end + stages - index))
    return [*widths, end]


def model_channels(model: torch.nn.Module) -> int:
    """Channels of the first hidden irrep of a plain mace-torch model."""
    config = describe_mace_model(plain_mace_model(model))
    return int(irreps_entries(config["hidden_irreps"])[0][0])


def epochs_for(steps: int, *, n_structures: int, config: TrainConfig, has_val: bool) -> int:
    n_train = (
        n_structures
        if has_val
        else max(1, n_structures - round(config.val_fraction * n_structures))
    )
    return max(1, math.ceil(steps / math.ceil(n_train / config.batch_size)))


def stage_config(
    config: TrainConfig, index: int, steps: int, *, n_structures: int, has_val: bool
) -> TrainConfig:
    """``config`` for stage ``index`` (1-based) of ``steps`` steps.

    The checkpoint ``P`` becomes ``P.stage<index>``, resumed only if asked and present.
    """
    base = config.checkpoint_path
    state = f"{base}.stage{index}" if base else None
    resume = bool(state and config.resume and Path(state).is_file())
    epochs = epochs_for(steps, n_structures=n_structures, config=config, has_val=has_val)
    return replace(config, epochs=epochs, max_steps=steps, checkpoint_path=state, resume=resume)


def gradual_prune(
    model: torch.nn.Module,
    structures: Sequence[Atoms],
    *,
    stages: Sequence[PruneStage],
    config: TrainConfig,
    val_structures: Sequence[Atoms] | None = None,
    keys: LabelKeys | None = None,
    importance: str = "taylor",
    calibration_count: int = 8,
    teacher: Any = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Prune ``model`` stage by stage, training after each stage.

    Args:
        model: a plain mace-torch ``ScaleShiftMACE`` (or a Potential of one); never modified.
        structures: labelled training structures (``keys``); the first ``calibration_count``
            also score the blocks.
        stages: the schedule (channels strictly decreasing; see :func:`channel_schedule`).
        config: training settings shared by the stages (``max_steps``/``epochs`` are set per
            stage; ``checkpoint_path`` P becomes ``P.stage<i>``).
        val_structures, keys: as for :func:`macelerate.train.loop.train`.
        importance: block scores (``taylor``, ``magnitude``, ``random``).
        teacher: a Potential whose predictions are the targets (``config.teacher_weight``),
            labelled again at every stage; ``None``: the structures' labels.

    Returns:
        The final plain mace-torch model and a report: per stage ``channels``, ``parameters``,
        ``macs_per_atom``, ``steps``, ``final_validation`` and ``seconds``.
    """
    keys = keys or LabelKeys()
    current = plain_mace_model(model)
    widths = [stage.channels for stage in stages]
    if not stages or any(b >= a for a, b in zip([model_channels(current), *widths], widths)):
        raise TrainConfigError(
            f"gradual pruning needs channels that shrink at every stage, from "
            f"{model_channels(current)} channels; got {widths}"
        )
    records = []
    calibration = list(structures[:calibration_count])
    if any(stage.remove_paths for stage in stages):
        config = replace(config, keep_dead_paths=True)  # removed paths stay removed in training
    for index, stage in enumerate(stages, start=1):
        pruned, pruned_report = prune(
            current, channels=stage.channels, max_L=stage.max_L, max_ell=stage.max_ell,
            importance=importance, calibration=calibration, label_keys=keys, seed=config.seed,
        )  # fmt: skip
        removed: list[dict[str, Any]] = []
        if stage.remove_paths:
            scores = path_ablation_scores(pruned, calibration)
            chosen = least_important_paths(scores, stage.remove_paths)
            pruned = remove_conv_paths(pruned, chosen)
            removed = [{"path": p.label, "force_rms_change": scores[p]} for p in chosen]
        settings = stage_config(config, index, stage.steps, n_structures=len(structures),
                                has_val=val_structures is not None)  # fmt: skip
        current, report = train(
            pruned, structures, config=settings, val_structures=val_structures, keys=keys,
            teacher=teacher,
        )  # fmt: skip
        records.append(
            {
                **asdict(stage),
                "parameters": pruned_report.parameters_after,
                "macs_per_atom": pruned_report.macs_per_atom_after,
                "removed_blocks": len(pruned_report.removed),
                "removed_paths": removed,
                "trained_steps": report.steps,
                "final_validation": report.final_validation,
                "seconds": report.seconds,
                "resumed_from_step": report.resumed_from_step,
            }
        )
    first = plain_mace_model(model)
    summary = {
        "importance": importance,
        "parameters_before": sum(p.numel() for p in first.parameters()),
        "parameters_after": sum(p.numel() for p in current.parameters()),
        "live_paths": [p.label for p in conv_paths(current) if p.live],
        "removed_paths": [p.label for p in conv_paths(current) if not p.live],
        "stages": records,
    }
    return current, summary
