"""Settings and report of a training run (:func:`macelerate.train.loop.train`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from macelerate._dtypes import MODEL_DTYPES
from macelerate.train.errors import TrainConfigError
from macelerate.train.losses import LossWeights
from macelerate.train.sparsity import SparsityConfig


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
        resume: continue from ``checkpoint_path`` (same settings and data required; ``epochs``
            may change: a cosine schedule then decays from the learning rate reached so far to
            ``lr * min_lr_ratio`` at the new last step, see :mod:`macelerate.train.schedule`).
            Without ``resume``, an existing ``checkpoint_path`` is an error (never overwritten).
        max_steps: stop after this many optimisation steps in total (the schedule still spans
            ``epochs``); the state file is written at the stop, so a later ``resume`` continues.
        fuse_message_passing: train a copy with :mod:`macelerate.runtime.fused_conv` applied.
        progress: show a tqdm progress bar.
        teacher_weight: with a teacher, targets are ``w * teacher + (1 - w) * labels``; below 1
            the structures need the labels named by ``keys``.
        teacher_hessian_rows: atoms per structure whose Hessian rows the teacher labels.
        frozen: parameter-name prefixes that are not trained.
        max_seconds: stop after this many seconds of optimisation steps in this call (the
            state is written; ``None``: no time limit). Set the schedule's length to what fits.
        early_stop_patience: stop when the validation loss has not improved for this many
            epochs (``None``: never stop early). The returned model is the last one, not the
            best; with an EMA the two rarely differ much.
        rotation_augmentation: turn every training batch's structures by random rotations
            (labels too; :mod:`macelerate.train.augment`), for students that are not rotation
            invariant by construction. Validation data are never rotated.
        sparsity: sparse training (SET or RigL masks on the radial MLPs and linears,
            :mod:`macelerate.train.sparsity`); ``None``: dense.
        keep_dead_paths: convolution paths whose ``linear`` weights are all zero at the start
            (removed paths, :mod:`macelerate.compress.paths`) stay zero after every step, so
            they stay removed (and skipped by the runtime).
        species_rank: low-rank species embeddings (:mod:`macelerate.compress.species_rank`):
            every element-dependent weight is projected onto rank ``species_rank`` after each
            step, as if each element were a learned embedding of this size. ``None``: full rank.
        autocast: mixed-precision training (:mod:`macelerate.train.mixed_precision`):
            ``"bfloat16"`` or ``"float16"`` (with loss scaling) matrix products around float32
            islands and float32 master weights; needs ``dtype="float32"``. ``None``: off.
        max_bad_batches: a batch whose loss or gradient is NaN/inf is skipped (no optimiser or
            EMA update) and counted; the run stops with :class:`TrainingDivergedError` when this
            many batches were skipped, and writes nothing with non-finite weights.
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
    max_bad_batches: int = 10
    max_seconds: float | None = None
    early_stop_patience: int | None = None
    rotation_augmentation: bool = False
    sparsity: SparsityConfig | None = None
    autocast: Literal["bfloat16", "float16"] | None = None
    keep_dead_paths: bool = False
    species_rank: int | None = None

    def __post_init__(self) -> None:
        problems = [
            f"{name} ({flag}) must be {rule}, got {getattr(self, name)!r}"
            for name, flag, rule, ok in _rules(self)
            if not ok
        ]
        if self.resume and not self.checkpoint_path:
            problems.append(
                "resume needs checkpoint_path: pass --checkpoint STATE (the training-state file "
                "to continue) with --resume"
            )
        if self.rotation_augmentation and self.teacher_hessian_rows:
            problems.append(
                "rotation augmentation cannot rotate Hessian-row labels: drop --rotation-augment "
                "or --hessian-rows"
            )
        if self.autocast is not None and self.dtype != "float32":
            problems.append(
                f"autocast ({self.autocast}) trains float32 master weights: pass --dtype float32 "
                "with --autocast (float64 tensors are never autocast)"
            )
        if problems:
            raise TrainConfigError("invalid training settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-safe)."""
        data = asdict(self)
        data["frozen"] = list(self.frozen)
        data["sparsity"] = None if self.sparsity is None else self.sparsity.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown TrainConfig keys {unknown}; known: {sorted(known)}")
        data = dict(data)
        if isinstance(data.get("loss"), dict):
            data["loss"] = LossWeights.from_dict(data["loss"])
        if "frozen" in data:
            data["frozen"] = tuple(data["frozen"])
        if isinstance(data.get("sparsity"), dict):
            data["sparsity"] = SparsityConfig.from_dict(data["sparsity"])
        return cls(**data)


def _finite(value: Any, low: float, high: float = math.inf) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high


def _rules(c: TrainConfig) -> list[tuple[str, str, str, bool]]:
    """(field, CLI flag, rule, satisfied) for every numeric and choice setting."""
    whole = lambda v, low: isinstance(v, int) and not isinstance(v, bool) and v >= low  # noqa: E731
    return [
        ("epochs", "--epochs", "an integer >= 1", whole(c.epochs, 1)),
        ("batch_size", "--batch-size", "an integer >= 1", whole(c.batch_size, 1)),
        ("lr", "--lr", "a finite number > 0", _finite(c.lr, 0.0) and c.lr > 0),
        ("weight_decay", "--weight-decay", ">= 0", _finite(c.weight_decay, 0.0)),
        ("schedule", "--schedule", "cosine, plateau or constant",
         c.schedule in ("cosine", "plateau", "constant")),
        ("min_lr_ratio", "--min-lr-ratio", "in [0, 1]", _finite(c.min_lr_ratio, 0.0, 1.0)),
        ("plateau_factor", "--plateau-factor", "in (0, 1)",
         _finite(c.plateau_factor, 0.0, 1.0) and 0 < c.plateau_factor < 1),
        ("plateau_patience", "--plateau-patience", "an integer >= 0",
         whole(c.plateau_patience, 0)),
        ("grad_clip", "--grad-clip", "> 0 or None (no clipping)",
         c.grad_clip is None or (_finite(c.grad_clip, 0.0) and c.grad_clip > 0)),
        ("ema_decay", "--ema-decay", "in [0, 1) or None (0 on the command line: no EMA)",
         c.ema_decay is None or (_finite(c.ema_decay, 0.0, 1.0) and c.ema_decay < 1)),
        ("dtype", "--dtype", f"one of {sorted(MODEL_DTYPES)}", c.dtype in MODEL_DTYPES),
        ("val_fraction", "--val-fraction", "in [0, 1) (0: no validation split; pass --val FILE "
         "for a separate set)", _finite(c.val_fraction, 0.0, 1.0) and c.val_fraction < 1),
        ("checkpoint_every", "--checkpoint-every", "an integer >= 1 or None",
         c.checkpoint_every is None or whole(c.checkpoint_every, 1)),
        ("max_steps", "--max-steps", "an integer >= 1 or None",
         c.max_steps is None or whole(c.max_steps, 1)),
        ("teacher_weight", "--teacher-weight", "in [0, 1]", _finite(c.teacher_weight, 0.0, 1.0)),
        ("teacher_hessian_rows", "--hessian-rows", "an integer >= 0",
         whole(c.teacher_hessian_rows, 0)),
        ("max_bad_batches", "--max-bad-batches", "an integer >= 1", whole(c.max_bad_batches, 1)),
        ("max_seconds", "--max-minutes (x 60)", "a finite number > 0 or None",
         c.max_seconds is None or (_finite(c.max_seconds, 0.0) and c.max_seconds > 0)),
        ("autocast", "--autocast", "bfloat16, float16 or None",
         c.autocast in (None, "bfloat16", "float16")),
        ("early_stop_patience", "--early-stop-patience", "an integer >= 1 or None",
         c.early_stop_patience is None or whole(c.early_stop_patience, 1)),
        ("species_rank", "--species-rank", "an integer >= 1 or None",
         c.species_rank is None or whole(c.species_rank, 1)),
    ]  # fmt: skip


@dataclass(frozen=True)
class TrainReport:
    """What a run did.

    Attributes:
        history: one record per completed epoch: ``epoch``, ``step``, ``lr``, ``train_loss``,
            ``train_terms`` (mean unweighted terms), ``val_energy_rmse`` (meV/atom),
            ``val_forces_rmse`` (meV/Å), ``val_loss``, ``seconds``.
        steps: batches processed in total (including before a resume, and skipped ones).
        epochs_completed: completed epochs.
        n_train, n_val: structures used for training and validation.
        n_parameters: trained parameters.
        fused_blocks: interaction blocks trained with fused message passing.
        seconds: wall time of this call.
        seconds_per_step: mean wall time of the optimisation steps of this call.
        resumed_from_step: step of the state file resumed from (``None``: fresh run).
        stopped_at_max_steps: the run stopped at ``max_steps`` before the last epoch ended.
        stop_reason: ``"completed"`` (last epoch), ``"max_steps"``, ``"max_seconds"`` or
            ``"early_stop"`` (validation loss stalled for ``early_stop_patience`` epochs).
        export_max_energy_diff, export_max_force_diff: largest |ΔE| (eV) and |ΔF| (eV/Å) between
            the exported unfused model and the trained copy on one batch.
        skipped_batches: batches skipped for a NaN/inf loss or gradient (counted in ``steps``).
        final_validation: validation of the returned model (EMA weights): ``step``,
            ``val_energy_rmse`` (meV/atom), ``val_forces_rmse`` (meV/Å), ``val_loss``; ``None``
            without validation data.
        sparsity: with sparse training, the zero share of the returned model's masked groups
            (:func:`macelerate.train.sparsity.sparsity_report`); ``None`` when dense.
        mixed_precision: with autocast, ``dtype``, ``islands`` (the float32 blocks) and
            ``overflow_steps`` (float16 steps skipped for overflowing scaled gradients).
        species_rank: with ``species_rank``, ``rank``, ``n_elements`` and ``singular_values``
            of the returned model's element-dependent weights (the trailing ones are zero).
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
    skipped_batches: int = 0
    final_validation: dict[str, Any] | None = None
    stop_reason: str = "completed"
    sparsity: dict[str, Any] | None = None
    mixed_precision: dict[str, Any] | None = None
    species_rank: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
