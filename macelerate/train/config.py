"""Settings and report of a training run (:func:`macelerate.train.loop.train`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch

from macelerate.train.losses import LossWeights

DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass(frozen=True)
class TrainConfig:
    """Settings of a training run (all keyword, all with defaults).

    Attributes:
        epochs: passes over the training structures.
        batch_size: structures per optimisation step.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        schedule: ``"cosine"`` (per step down to ``lr * min_lr_ratio``), ``"plateau"`` (multiply
            by ``plateau_factor`` after ``plateau_patience`` epochs without validation gain) or
            ``"constant"``.
        min_lr_ratio, plateau_factor, plateau_patience: schedule parameters.
        grad_clip: maximum gradient norm (``None``: no clipping).
        ema_decay: EMA decay of the parameters used for validation and export (``None``: no EMA).
        loss: loss weights and Huber threshold.
        seed: seed of the validation split, the data order and the teacher's Hessian atoms.
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"float64"`` or ``"float32"``: the precision of the trained copy and the graphs.
        val_fraction: share of the training structures held out when no validation set is given.
        checkpoint_path: training-state file (written every epoch, every ``checkpoint_every``
            steps and when stopping); ``None``: none.
        checkpoint_every: steps between state writes inside an epoch (``None``: epochs only).
        resume: continue from ``checkpoint_path`` (same settings and data required).
        max_steps: stop after this many optimisation steps in total (the schedule still spans
            ``epochs``); the state file is written at the stop, so a later ``resume`` continues.
        fuse_message_passing: train a copy with :mod:`macelerate.runtime.fused_conv` applied.
        progress: show a tqdm progress bar.
        teacher_weight: with a teacher, targets are ``w * teacher + (1 - w) * labels``; below 1
            the structures need the labels named by ``keys``.
        teacher_hessian_rows: atoms per structure whose Hessian rows the teacher labels.
        frozen: parameter-name prefixes that are not trained.
    """

    epochs: int = 10
    batch_size: int = 4
    lr: float = 1e-2
    weight_decay: float = 0.0
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    min_lr_ratio: float = 0.01
    plateau_factor: float = 0.5
    plateau_patience: int = 3
    grad_clip: float | None = 10.0
    ema_decay: float | None = 0.99
    loss: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float64", "float32"] = "float64"
    val_fraction: float = 0.1
    checkpoint_path: str | None = None
    checkpoint_every: int | None = None
    resume: bool = False
    max_steps: int | None = None
    fuse_message_passing: bool = True
    progress: bool = True
    teacher_weight: float = 1.0
    teacher_hessian_rows: int = 0
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("need epochs >= 1, batch_size >= 1 and lr > 0")
        if self.schedule not in ("cosine", "plateau", "constant"):
            raise ValueError(f"schedule must be cosine, plateau or constant, not {self.schedule!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if self.resume and not self.checkpoint_path:
            raise ValueError("resume=True needs checkpoint_path (the training-state file)")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe)."""
        data = asdict(self)
        data["frozen"] = list(self.frozen)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossWeights(**data["loss"])
        if "frozen" in data:
            data["frozen"] = tuple(data["frozen"])
        return cls(**data)


@dataclass(frozen=True)
class TrainReport:
    """What a run did.

    Attributes:
        history: one record per completed epoch: ``epoch``, ``step``, ``lr``, ``train_loss``,
            ``train_terms`` (mean unweighted terms), ``val_energy_rmse`` (meV/atom),
            ``val_forces_rmse`` (meV/Å), ``val_loss``, ``seconds``.
        steps: optimisation steps done in total (including before a resume).
        epochs_completed: completed epochs.
        n_train, n_val: structures used for training and validation.
        n_parameters: trained parameters.
        fused_blocks: interaction blocks trained with fused message passing.
        seconds: wall time of this call.
        seconds_per_step: mean wall time of the optimisation steps of this call.
        resumed_from_step: step of the state file resumed from (``None``: fresh run).
        stopped_at_max_steps: the run stopped at ``max_steps`` before the last epoch ended.
        export_max_energy_diff, export_max_force_diff: largest |ΔE| (eV) and |ΔF| (eV/Å) between
            the exported unfused model and the trained copy on one batch.
    """

    history: list[dict[str, Any]]
    steps: int
    epochs_completed: int
    n_train: int
    n_val: int
    n_parameters: int
    fused_blocks: int
    seconds: float
    seconds_per_step: float
    resumed_from_step: int | None
    stopped_at_max_steps: bool
    export_max_energy_diff: float
    export_max_force_diff: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
