"""``macelerate prune MODEL --channels K --out OUT``: a smaller, exactly equivariant MACE.

Scores every (channel, L) block on calibration structures, builds the smaller mace-torch model,
optionally fine-tunes it (recovery), and reports parameters, multiply-adds, accuracy before and
after recovery on a test set, and the time per step of both models in this process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from macelerate.cli.common import write_json
from macelerate.cli.train import _huber


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune", help="remove whole (channel, L) blocks of a MACE, then optionally fine-tune"
    )
    parser.add_argument("model", help="mace-torch .model file or macelerate checkpoint")
    parser.add_argument("--channels", type=int, required=True, help="channels to keep")
    parser.add_argument("--max-L", type=int, default=None, dest="max_L", help="hidden max L")
    parser.add_argument("--max-ell", type=int, default=None, help="spherical-harmonics order")
    parser.add_argument("--importance", default="taylor", choices=["taylor", "magnitude", "random"])
    parser.add_argument("--calibration", default=None, help="structures scoring the blocks")
    parser.add_argument("--calibration-count", type=int, default=8)
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--out", required=True, help="macelerate checkpoint to write")
    parser.add_argument("--mace-model", default=None, metavar="OUT.model",
                        help="also write a mace-torch .model pickle (MACECalculator, LAMMPS)")
    recovery = parser.add_argument_group("recovery fine-tuning")
    recovery.add_argument("--finetune", default=None, metavar="DATA", help="labelled structures")
    recovery.add_argument("--distill-weight", type=float, default=0.0,
                          help="targets = w * unpruned model + (1 - w) * labels")
    recovery.add_argument("--epochs", type=int, default=5)
    recovery.add_argument("--max-steps", type=int, default=None)
    recovery.add_argument("--batch-size", type=int, default=2)
    recovery.add_argument("--lr", type=float, default=5e-3)
    recovery.add_argument("--huber-delta", type=_huber, default=0.01, help="'none' for MSE")
    recovery.add_argument("--dtype", default="float32", choices=["float64", "float32"])
    recovery.add_argument("--checkpoint", default=None, metavar="STATE")
    recovery.add_argument("--resume", action="store_true")
    recovery.add_argument("--no-progress", action="store_true")
    parser.add_argument("--test", default=None, metavar="DATA", help="report accuracy here")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="REPORT")
    parser.set_defaults(run=run)


def _accuracy(model: Any, structures: list, keys: Any) -> dict[str, float]:
    from macelerate.evaluate import evaluate
    from macelerate.models.loading import load

    report = evaluate(load(model, dtype="float64"), structures, keys=keys, source="test")
    return {"energy_rmse": report.energy_rmse, "force_rmse": report.force_rmse}


def _ms_per_step(model: Any, atoms: Any) -> float:
    from macelerate.models.loading import load

    potential = load(model, dtype="float32")
    potential.forward(potential.build_graph(atoms))
    start = time.perf_counter()
    for _ in range(3):
        potential.forward(potential.build_graph(atoms))
    return 1e3 * (time.perf_counter() - start) / 3


def _recover(pruned: Any, original: Any, args: argparse.Namespace, keys: Any) -> tuple:
    from macelerate.data.labels import read_structures
    from macelerate.models.loading import load
    from macelerate.train.config import TrainConfig
    from macelerate.train.loop import train
    from macelerate.train.losses import LossWeights

    teacher = load(original, dtype=args.dtype) if args.distill_weight > 0 else None
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        loss=LossWeights(huber_delta=args.huber_delta), dtype=args.dtype, seed=args.seed,
        teacher_weight=args.distill_weight if teacher else 1.0, checkpoint_path=args.checkpoint,
        resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    structures = read_structures(args.finetune)
    return train(pruned, structures, config=config, keys=keys, teacher=teacher)


def run(args: argparse.Namespace) -> int:
    from macelerate.atomic_io import write_atomically
    from macelerate.compress import prune
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.models.checkpoint import make_provenance, save_checkpoint
    from macelerate.models.config import describe_mace_model
    from macelerate.models.loading import read_model_file

    original, source = read_model_file(args.model)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    calibration = read_structures(args.calibration)[: args.calibration_count] if (
        args.calibration) else None  # fmt: skip
    pruned, report = prune(
        original, channels=args.channels, max_L=args.max_L, max_ell=args.max_ell,
        importance=args.importance, calibration=calibration, label_keys=keys, seed=args.seed,
    )  # fmt: skip
    summary: dict[str, Any] = {"prune": report.to_dict()}
    test = read_structures(args.test) if args.test else None
    if test:
        summary["original_test"] = _accuracy(original, test, keys)
        summary["pruned_test"] = _accuracy(pruned, test, keys)
        summary["ms_per_step_float32"] = {
            "original": _ms_per_step(original, test[0]), "pruned": _ms_per_step(pruned, test[0])
        }  # fmt: skip
    transforms = [*source.transforms_applied, {"transform": "prune", **report.to_dict()}]
    if args.finetune:
        pruned, train_report = _recover(pruned, original, args, keys)
        summary["recovery"] = {"steps": train_report.steps, "history": train_report.history}
        transforms.append({"transform": "recovery", "data": args.finetune,
                           "steps": train_report.steps})  # fmt: skip
        if test:
            summary["recovered_test"] = _accuracy(pruned, test, keys)
    save_checkpoint(
        args.out, model_config=describe_mace_model(pruned), state_dict=pruned.state_dict(),
        provenance=make_provenance(args.model), transforms_applied=transforms,
    )  # fmt: skip
    if args.mace_model:
        import torch

        write_atomically(args.mace_model, lambda tmp: torch.save(pruned, tmp))
    _print(report, summary, args)
    if args.json:
        write_json(args.json, summary)
    return 0


def _print(report: Any, summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"parameters {report.parameters_before} -> {report.parameters_after} "
          f"({report.parameters_before / report.parameters_after:.2f}x fewer); multiply-adds "
          f"per atom {report.macs_per_atom_before} -> {report.macs_per_atom_after}")  # fmt: skip
    print(f"removed {len(report.removed)} blocks ({report.importance} importance)")
    for name in ("original_test", "pruned_test", "recovered_test"):
        if name in summary:
            row = summary[name]
            print(f"{name:<15} E RMSE {row['energy_rmse']:.2f} meV/atom, "
                  f"F RMSE {row['force_rmse']:.1f} meV/Å")  # fmt: skip
    if "ms_per_step_float32" in summary:
        ms = summary["ms_per_step_float32"]
        print(f"float32 step: {ms['original']:.1f} ms -> {ms['pruned']:.1f} ms "
              f"({ms['original'] / ms['pruned']:.2f}x faster)")  # fmt: skip
    print(f"wrote {args.out}" + (f" and {args.mace_model}" if args.mace_model else ""))
