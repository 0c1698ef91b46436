"""The training loop shared by plain training, fine-tuning after pruning, and distillation.

Trainable-model contract: ``model(graph, training=..., compute_force=..., compute_stress=...)``
returns ``energy`` [G] eV, ``forces`` [N, 3] eV/Å (conservative or direct), optionally ``stress``
[G, 3, 3] eV/Å³ and ``confidence_logits`` [N, n_bins] (the module then has ``confidence_bins``,
edges in eV/Å). The module has ``r_max`` and ``atomic_numbers``, and may have ``graph_options()``
(e.g. ``{"max_neighbors": 16}``) whose items go to :func:`macelerate.build_graph`. mace-torch models
and :class:`macelerate.models.student.Student` both fit.

:func:`train` never touches the caller's model: it trains a deep copy (with fused message passing
when possible), keeps an EMA of the parameters for validation and export, writes a resumable state
file atomically, and returns an unfused copy with the averaged weights in the layout mace-torch
checkpoints use. Batches with a NaN/inf loss or gradient are skipped and counted, too many of them
stop the run, and no state or model with NaN/inf weights is ever written or returned
(:mod:`macelerate.train.guard`). The step loop itself is :class:`~macelerate.train.run.TrainingRun`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from ase import Atoms

from macelerate._dtypes import parse_dtype
from macelerate._mace import quiet_model_construction
from macelerate.compress.paths import dead_path_masks
from macelerate.compress.species_rank import species_rank_summary
from macelerate.data.labels import LabelKeys
from macelerate.models.potential import Potential
from macelerate.train.config import TrainConfig, TrainReport
from macelerate.train.data import (
    Batch,
    LabelledData,
    mix_labels,
    model_edge_selection,
    model_graph_options,
    read_labels,
)
from macelerate.train.distributed import data_parallel_from_env, local_device
from macelerate.train.errors import TrainConfigError, TrainingDivergedError
from macelerate.train.export import fuse_all, load_trained_weights, unfused_template
from macelerate.train.guard import ADVICE, require_finite
from macelerate.train.run import TrainingRun
from macelerate.train.sparsity import sparsity_report
from macelerate.train.state import TrainStateError, check_resumable, load_train_state
from macelerate.train.steps import (  # noqa: F401  (re-exported)
    batch_loss,
    equigrad_norms,
    forward_batch,
    validate,
)

__all__ = ["TrainConfig", "TrainReport", "train", "training_copy"]


def training_copy(model: torch.nn.Module, config: TrainConfig) -> tuple[torch.nn.Module, int]:
    """Deep copy on ``config.device``/``dtype`` with trainable parameters; (copy, fused blocks)."""
    with quiet_model_construction():
        trainee = copy.deepcopy(model)
    trainee = trainee.to(device=config.device, dtype=parse_dtype(config.dtype))
    frozen = tuple(config.frozen)
    for name, parameter in trainee.named_parameters():
        parameter.requires_grad_(not (frozen and name.startswith(frozen)))
    fused = fuse_all(trainee) if config.fuse_message_passing else 0
    return trainee.train(), fused


def trainable_module(model: torch.nn.Module | Potential) -> torch.nn.Module:
    """The module to train: ``model`` itself, or the model of an exact :class:`Potential`.

    Raises:
        TrainConfigError: a Potential with a precision policy or a lever that is not exact
            (tabulated radial functions, int8 readouts): they change the model's function.
    """
    if not isinstance(model, Potential):
        return model
    levers = [t.name for t in model.transforms if t.name != "fuse"]
    if model.precision is not None or levers:
        raise TrainConfigError(
            f"cannot train a Potential loaded with {levers or ['a precision policy']}: those "
            "levers approximate the model. Train the model file, or load it without them "
            "(macelerate.load(path, dtype=...))"
        )
    return model.model


def _labelled(
    model: torch.nn.Module,
    structures: Sequence[Atoms],
    *,
    keys: LabelKeys,
    teacher: Potential | None,
    config: TrainConfig,
    source: str,
    progress: bool,
) -> LabelledData:
    """Training data from labels, or from a teacher's predictions (mixed with labels if asked)."""
    options: dict[str, Any] = {
        "graph_options": model_graph_options(model),
        "edge_selection": model_edge_selection(model),
        "dtype": parse_dtype(config.dtype),
        "source": source,
        "progress": progress,
    }
    if teacher is None:
        return LabelledData(structures, keys=keys, **options)
    from macelerate.train.teacher import label_structures

    labelled = label_structures(
        teacher, structures, hessian_rows=config.teacher_hessian_rows, seed=config.seed,
        progress=progress,
    )  # fmt: skip
    stress = "stress" if all(atoms.pbc.all() for atoms in structures) else None
    teacher_keys = LabelKeys(energy="energy", forces="forces", stress=stress)
    data = LabelledData(labelled, keys=teacher_keys, **options)
    if config.teacher_weight < 1.0:
        data.labels = [
            mix_labels(t, read_labels(atoms, keys, index=i, source=source), config.teacher_weight)
            for i, (t, atoms) in enumerate(zip(data.labels, structures))
        ]
    return data


def _export_difference(
    trained: torch.nn.Module, exported: torch.nn.Module, batch: Batch
) -> tuple[float, float]:
    """Largest |ΔE| (eV) and |ΔF| (eV/Å) between two models on ``batch``."""
    trained_mode = trained.training
    trained.eval()
    a, _ = forward_batch(trained, batch, training=False, compute_stress=False)
    b, _ = forward_batch(exported, batch, training=False, compute_stress=False)
    trained.train(trained_mode)
    require_finite(
        {"energy": b["energy"].detach(), "forces": b["forces"].detach()},
        what="the trained model's prediction of a training structure",
        kept="any earlier output file is unchanged",
    )
    energy = float((a["energy"] - b["energy"]).detach().abs().max())
    forces = float((a["forces"] - b["forces"]).detach().abs().max())
    return energy, forces


def check_state_file(config: TrainConfig) -> None:
    """Refuse to start a run that would overwrite a training state, or resume a missing one.

    Raises:
        TrainStateError: ``checkpoint_path`` exists without ``resume``, or is missing with it.
    """
    path = config.checkpoint_path
    if not path:
        return
    if config.resume and not Path(path).is_file():
        raise TrainStateError(
            f"training state {path} does not exist, so there is nothing to resume; drop "
            "--resume to start a new run that writes it"
        )
    if not config.resume and Path(path).exists():
        raise TrainStateError(
            f"training state {path} already exists and would be overwritten; pass --resume to "
            "continue that run, or delete the file (or choose another --checkpoint) to start a "
            "new one"
        )


def _resume(run: TrainingRun) -> int:
    """Restore ``run`` from its state file (checked against settings and data) -> its step."""
    path = str(run.config.checkpoint_path)  # TrainConfig requires it with resume
    state = load_train_state(path)
    check_resumable(state, config=run.config.to_dict(), fingerprint=run.fingerprint, path=path)
    run.restore(state)
    return run.step


def final_validation(
    run: TrainingRun, exported: torch.nn.Module, val_data: LabelledData | None
) -> dict[str, Any] | None:
    """Validation of the returned model (EMA weights) at the last step; reuses the last epoch's
    figures when that epoch ended at the last step (they were computed on the same weights)."""
    if val_data is None:
        return None
    last = run.history[-1] if run.history else None
    names = ("val_energy_rmse", "val_forces_rmse", "val_loss")
    if last is not None and last["step"] == run.step:
        metrics = {name: last[name] for name in names}
    else:
        metrics = validate(exported, val_data, batch_size=run.config.batch_size,
                           weights=run.config.loss)  # fmt: skip
    return {"step": run.step, **metrics}


def train(
    model: torch.nn.Module,
    train_structures: Sequence[Atoms],
    *,
    config: TrainConfig | None = None,
    val_structures: Sequence[Atoms] | None = None,
    keys: LabelKeys | None = None,
    teacher: Potential | None = None,
) -> tuple[torch.nn.Module, TrainReport]:
    """Train a copy of ``model`` on labelled structures (or a teacher's predictions).

    Args:
        model: a module following the contract in the module docstring, or a
            :class:`Potential` loaded without approximate levers (never modified).
        train_structures: training structures carrying the labels named by ``keys``.
        config: settings (default :class:`TrainConfig`).
        val_structures: validation structures; default: ``config.val_fraction`` of the training
            structures, held out at random with ``config.seed``.
        keys: label names (default ``LabelKeys()``: ``energy`` and ``forces``).
        teacher: if given, targets are its predictions (see ``TrainConfig.teacher_weight``).

    Returns:
        The trained model (unfused mace-torch layout, EMA weights, eval mode, on
        ``config.device`` in ``config.dtype``) and a :class:`TrainReport`.

    Raises:
        DataFileError: a structure lacks a requested label, or one is not numeric, NaN/inf or
            of the wrong shape.
        UnknownElementError: a structure holds an element the model does not know.
        TrainConfigError: a Potential with approximate levers or a precision policy.
        TrainStateError: ``resume`` with a missing state file or one from other settings or
            data; or an existing ``checkpoint_path`` without ``resume``.
        TrainingDivergedError: ``config.max_bad_batches`` batches had a NaN/inf loss or
            gradient, or the weights to save or return hold NaN/inf (nothing is written then).
    """
    model = trainable_module(model)
    config = config or TrainConfig()
    if local_device(config.device) != config.device:  # torchrun: one GPU per local rank
        config = replace(config, device=local_device(config.device))
    check_state_file(config)
    keys = keys or LabelKeys()
    started = time.perf_counter()
    parallel = data_parallel_from_env(device=config.device, batch_size=config.batch_size)
    progress = config.progress and parallel.is_main
    template = unfused_template(model).to(device=config.device, dtype=parse_dtype(config.dtype))
    trainee, fused = training_copy(model, config)
    train_data = _labelled(
        trainee, train_structures, keys=keys, teacher=teacher, config=config,
        source="training structures", progress=progress,
    )  # fmt: skip
    if val_structures is None:
        train_data, val_data = train_data.split(config.val_fraction, seed=config.seed)
    else:
        val_data = _labelled(
            trainee, val_structures, keys=keys, teacher=teacher, config=config,
            source="validation structures", progress=progress,
        )  # fmt: skip
    zeros = dead_path_masks(template) if config.keep_dead_paths else None
    run = TrainingRun(trainee, train_data, val_data, config, parallel, zeros=zeros)
    resumed_from = _resume(run) if config.resume else None
    stopped = run.run()
    probe = (val_data or train_data).batch([0], device=run.device)
    with run.averaged():
        exported = load_trained_weights(template, trainee)
        require_finite(exported.state_dict(), what="the trained model",
                       kept="any earlier output file is unchanged")  # fmt: skip
        energy_diff, force_diff = _export_difference(trainee, exported, probe)
    sparsity = None
    if run.masks is not None and config.sparsity is not None:
        sparsity = sparsity_report(exported, config.sparsity, updates=run.masks.updates)
    species = None
    if config.species_rank is not None:
        species = species_rank_summary(exported, config.species_rank)
    report = TrainReport(
        history=run.history,
        steps=run.step,
        epochs_completed=run.step // run.steps_per_epoch,
        n_train=len(train_data),
        n_val=0 if val_data is None else len(val_data),
        n_parameters=sum(p.numel() for p in run.params),
        fused_blocks=fused,
        seconds=time.perf_counter() - started,
        seconds_per_step=run.step_seconds / max(run.steps_run, 1),
        resumed_from_step=resumed_from,
        stopped_at_max_steps=stopped and run.stop_reason == "max_steps",
        export_max_energy_diff=energy_diff,
        export_max_force_diff=force_diff,
        skipped_batches=run.bad_batches,
        final_validation=final_validation(run, exported, val_data),
        stop_reason=run.stop_reason,
        sparsity=sparsity,
        mixed_precision=None if run.mixed is None else {
            "dtype": config.autocast, "islands": run.mixed.islands,
            "overflow_steps": run.mixed.overflow_steps,
        },
        species_rank=species,
    )  # fmt: skip
    _require_finite_validation(report.final_validation)
    return exported, report


def _require_finite_validation(metrics: dict[str, Any] | None) -> None:
    """Refuse a model whose validation errors are NaN or infinite (finite but huge weights)."""
    bad = {
        k: v for k, v in (metrics or {}).items() if isinstance(v, float) and not math.isfinite(v)
    }
    if bad:
        raise TrainingDivergedError(
            f"training diverged: the trained model's validation errors are not finite ({bad}); "
            f"nothing was written and any earlier output file is unchanged. To fix: {ADVICE}"
        )
