"""Options shared by the training commands (``train``, ``distill``; ``label`` for progress).

One place for the fitting options, their help texts and defaults, the :class:`TrainConfig` they
make, and the closing lines the commands print, so ``train`` and ``distill`` cannot drift apart.
"""

from __future__ import annotations

import argparse
from typing import Any

from macelerate.errors import MacelerateError


class CommandLineError(MacelerateError, ValueError):
    """Command-line arguments that contradict each other or are out of range."""


def float_or_none(text: str) -> float | None:
    """``'none'`` -> ``None``, else a float (for options that can be switched off)."""
    return None if text.lower() == "none" else float(text)


def huber_delta(text: str) -> float | None:
    """``--huber-delta``: a threshold in the unit of each loss term, or ``none``/``mse``."""
    return None if text.lower() in ("none", "mse") else float(text)


def add_command(
    subparsers: argparse._SubParsersAction, name: str, *, help: str
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` shows every option's default (:func:`add_subcommand`)."""
    from macelerate.cli.common import add_subcommand

    return add_subcommand(subparsers, name, help=help, description=help[:1].upper() + help[1:])


def add_label_keys(parser: argparse.ArgumentParser | Any, *, stress: bool) -> None:
    """``--energy-key``, ``--forces-key`` (and ``--stress-key``): label names in the data."""
    parser.add_argument("--energy-key", default="energy",
                        help="name of the total-energy label (eV) in the data")  # fmt: skip
    parser.add_argument("--forces-key", default="forces",
                        help="name of the forces label (eV/Å) in the data")  # fmt: skip
    if stress:
        parser.add_argument(
            "--stress-key", default=None, help="name of the stress label (eV/Å³); default: none"
        )


def add_fit_options(group: Any, *, batch_size: int, dtype: str) -> None:
    """The optimisation, schedule, checkpointing and progress options of a training command."""
    add = group.add_argument
    add("--epochs", type=int, default=10, help="passes over the training structures")
    add("--batch-size", type=int, default=batch_size, help="structures per optimisation step")
    add("--lr", type=float, default=1e-2, help="peak learning rate of AdamW")
    add("--schedule", default="cosine", choices=["cosine", "plateau", "constant"],
        help="learning-rate schedule: per-step cosine decay to --min-lr-ratio, multiply by "
        "--plateau-factor when validation stalls, or constant")  # fmt: skip
    add("--min-lr-ratio", type=float, default=0.01, help="cosine: final lr = lr * this")
    add("--plateau-factor", type=float, default=0.5, help="plateau: lr multiplier on a stall")
    add("--plateau-patience", type=int, default=3,
        help="plateau: epochs without validation gain before the lr drops")  # fmt: skip
    add("--weight-decay", type=float, default=0.0, help="AdamW decoupled weight decay")
    add("--grad-clip", type=float_or_none, default=10.0,
        help="maximum gradient norm; 'none' for no clipping")  # fmt: skip
    add("--ema-decay", type=float, default=0.99,
        help="decay of the parameter average used for validation and the written model; "
        "0 for no averaging")  # fmt: skip
    add("--huber-delta", type=huber_delta, default=0.01,
        help="Huber threshold of the loss terms; 'none' for mean squared error")  # fmt: skip
    add(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of --data held out for validation when --val is not given; 0 for none",
    )
    add("--max-bad-batches", type=int, default=10,
        help="stop with an error after this many batches with a NaN/inf loss or gradient "
        "(each is skipped)")  # fmt: skip
    add("--seed", type=int, default=0, help="seed of the split, data order and initial weights")
    add("--device", default="cpu", help="cpu or cuda")
    add("--dtype", default=dtype, choices=["float64", "float32"], help="training precision")
    add(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many steps in total (resumable); default: all epochs",
    )
    add(
        "--max-minutes",
        type=float,
        default=None,
        help="stop after this many minutes of training steps (state written; resumable)",
    )
    add(
        "--early-stop-patience",
        type=int,
        default=None,
        metavar="EPOCHS",
        help="stop when the validation loss has not improved for this many epochs",
    )
    add("--checkpoint", default=None, metavar="STATE",
        help="training-state file, written every epoch and at --max-steps; must not exist "
        "unless --resume")  # fmt: skip
    add(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="STEPS",
        help="also write STATE every this many steps; default: at epoch ends only",
    )
    add("--resume", action="store_true",
        help="continue the run saved in --checkpoint (same settings and data; --epochs may "
        "grow: the lr schedule then continues from its current value)")  # fmt: skip
    add("--rotation-augment", action="store_true",
        help="turn each training batch by random rotations (labels too): for models that are "
        "not rotation invariant by construction; compare with --equigrad")  # fmt: skip
    add("--autocast", default=None, choices=["bfloat16", "float16"],
        help="mixed-precision training (needs --dtype float32): matrix products in this dtype, "
        "float32 master weights and float32 islands (geometry, convolution sums, CG "
        "contractions, readouts); float16 adds loss scaling")  # fmt: skip
    add("--sparse", default=None, choices=["set", "rigl"],
        help="sparse training of the radial MLPs and linears: masks at --sparsity, entries "
        "dropped by magnitude and regrown at random (set) or by gradient (rigl); saves "
        "parameters, not time (dense kernels)")  # fmt: skip
    add("--sparsity", type=float, default=0.8, help="with --sparse: zero share of each tensor")
    add("--sparse-groups", default="radial,linear",
        help="with --sparse: comma-separated groups to mask (radial, linear)")  # fmt: skip
    add("--sparse-update-every", type=int, default=100, metavar="STEPS",
        help="with --sparse: steps between drop/grow updates")  # fmt: skip
    add("--species-rank", type=int, default=None, metavar="R",
        help="low-rank species embeddings: keep every element-dependent weight (node "
        "embedding, skip connections, contraction weights) at rank R < number of elements, "
        "as if each element were a learned R-dimensional embedding; saves parameters, "
        "not time")  # fmt: skip
    add("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    add("--json", default=None, metavar="REPORT", help="also write the TrainReport as JSON")


def fit_config(args: argparse.Namespace, *, loss: Any, **extra: Any) -> Any:
    """The :class:`~macelerate.train.config.TrainConfig` of the :func:`add_fit_options` args."""
    from macelerate.train.config import TrainConfig
    from macelerate.train.sparsity import SparsityConfig

    sparsity = None
    if args.sparse is not None:
        sparsity = SparsityConfig(
            method=args.sparse, target=args.sparsity, update_every=args.sparse_update_every,
            groups=tuple(g.strip() for g in args.sparse_groups.split(",") if g.strip()),
        )  # fmt: skip
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        min_lr_ratio=args.min_lr_ratio, plateau_factor=args.plateau_factor,
        plateau_patience=args.plateau_patience, weight_decay=args.weight_decay,
        grad_clip=args.grad_clip, ema_decay=args.ema_decay if args.ema_decay != 0 else None,
        loss=loss, val_fraction=args.val_fraction, max_bad_batches=args.max_bad_batches,
        seed=args.seed, device=args.device, dtype=args.dtype, max_steps=args.max_steps,
        checkpoint_path=args.checkpoint, checkpoint_every=args.checkpoint_every,
        resume=args.resume, progress=not args.no_progress,
        max_seconds=None if args.max_minutes is None else 60.0 * args.max_minutes,
        early_stop_patience=args.early_stop_patience,
        rotation_augmentation=args.rotation_augment, sparsity=sparsity,
        autocast=args.autocast, species_rank=args.species_rank, **extra,
    )  # fmt: skip


def validation_line(report: Any, *, ema: bool, against: str = "") -> str | None:
    """The closing line: validation of the model written (``None`` without validation data)."""
    final = report.final_validation
    if not final or final.get("val_forces_rmse") is None and final.get("val_energy_rmse") is None:
        return None
    weights = "averaged (EMA) weights" if ema else "final weights"

    def fmt(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    return (
        f"validation{against} of the written model ({report.n_val} structures, {weights}, step "
        f"{final['step']}): E RMSE {fmt(final['val_energy_rmse'], '.2f')} meV/atom, "
        f"F RMSE {fmt(final['val_forces_rmse'], '.1f')} meV/Å"
    )


def sparsity_line(report: Any) -> str | None:
    """What sparse training left: zero share per group and the honest cost note."""
    summary = report.sparsity
    if not summary:
        return None
    groups = ", ".join(
        f"{name} {100 * g['sparsity']:.1f}% zero ({g['nonzero']}/{g['parameters']})"
        for name, g in summary["groups"].items()
    )
    return (
        f"sparse training ({summary['method']}, {summary['mask_updates']} mask updates): {groups}; "
        f"{summary['nonzero']}/{summary['parameters']} parameters non-zero. Note: "
        f"{summary['note']}"
    )


def species_rank_line(report: Any) -> str | None:
    """The species rank kept and the spectrum of the element-dependent weights."""
    summary = report.species_rank
    if not summary:
        return None
    values = ", ".join(f"{v:.3g}" for v in summary["singular_values"])
    return (
        f"species rank {summary['rank']} of {summary['n_elements']} elements; singular values of "
        f"the element-dependent weights: {values}"
    )


def lever_lines(report: Any) -> list[str]:
    """One line per training lever that reports what it left (sparsity, species rank)."""
    return [line for line in (sparsity_line(report), species_rank_line(report)) if line]


def require_finite_model(module: Any, *, out: str) -> None:
    """Refuse to write a model with NaN/inf weights (``TrainingDivergedError``)."""
    from macelerate.train.guard import require_finite

    require_finite(module.state_dict(), what=f"the model for {out}",
                   kept=f"{out} is unchanged")  # fmt: skip


def check_ranges(checks: list[tuple[str, Any, bool, str]]) -> None:
    """Raise one :class:`CommandLineError` naming every ``(option, value, ok, rule)`` that fails."""
    problems = [f"{name} must be {rule}, got {value}" for name, value, ok, rule in checks if not ok]
    if problems:
        raise CommandLineError("; ".join(problems))
