"""``macelerate prune MODEL --channels K --out OUT``: a smaller, exactly equivariant MACE.

Scores every (channel, L) block on calibration structures, builds the smaller mace-torch model,
optionally fine-tunes it (recovery), and reports parameters, multiply-adds, accuracy before and
after recovery on a test set, and the time per step of both models in this process.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from macelerate.cli.common import add_progress_option, add_subcommand, write_json
from macelerate.cli.train_options import huber_delta


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "prune",
        help="remove whole (channel, L) blocks of a MACE, then optionally fine-tune",
    )
    add = parser.add_argument
    add("model", help="mace-torch .model file or macelerate checkpoint")
    add("--channels", type=int, required=True, help="channels to keep in every channel space")
    add(
        "--max-L",
        type=int,
        default=None,
        dest="max_L",
        help="largest L of the hidden features to keep (default: unchanged)",
    )
    add(
        "--max-ell",
        type=int,
        default=None,
        help="largest spherical-harmonic order of the edges to keep (default: unchanged)",
    )
    add(
        "--importance",
        default="taylor",
        choices=["taylor", "magnitude", "random"],
        help="block scores: Taylor loss estimate on --calibration, weight magnitude, or random "
        "(a control)",
    )
    add(
        "--calibration",
        default=None,
        metavar="DATA",
        help="structures scoring the blocks (taylor; default: none)",
    )
    add("--calibration-count", type=int, default=8, help="first N calibration structures used")
    add("--energy-key", default="energy", help="total-energy label (eV) in the data files")
    add("--forces-key", default="forces", help="forces label (eV/Å) in the data files")
    add("--out", required=True, help="macelerate checkpoint to write")
    add(
        "--mace-model",
        default=None,
        metavar="OUT.model",
        help="also write a mace-torch .model pickle (MACECalculator, LAMMPS; default: no)",
    )
    add(
        "--test",
        default=None,
        metavar="DATA",
        help="report accuracy and time per step on these structures (default: none)",
    )
    add("--seed", type=int, default=0, help="seed of random scores, Taylor probes and training")
    add("--json", default=None, metavar="REPORT", help="write the summary here (default: no)")
    add_progress_option(parser)
    _add_recovery_options(parser.add_argument_group("recovery fine-tuning"))
    parser.set_defaults(run=run)


def _add_recovery_options(group: Any) -> None:
    add = group.add_argument
    add(
        "--finetune",
        default=None,
        metavar="DATA",
        help="labelled structures to fine-tune the pruned model on (default: no recovery)",
    )
    add(
        "--distill-weight",
        type=float,
        default=0.0,
        help="targets = w * unpruned model + (1 - w) * labels",
    )
    add("--epochs", type=int, default=5, help="passes over the fine-tuning structures")
    add(
        "--max-steps",
        type=int,
        default=None,
        help="stop after this many optimisation steps (default: --epochs decides)",
    )
    add("--batch-size", type=int, default=2, help="structures per optimisation step")
    add("--lr", type=float, default=5e-3, help="peak learning rate")
    add(
        "--huber-delta",
        type=huber_delta,
        default=0.01,
        help="Huber loss threshold per term; 'none' for MSE",
    )
    add(
        "--dtype",
        default="float32",
        choices=["float64", "float32"],
        help="dtype of the fine-tuning",
    )
    add(
        "--checkpoint",
        default=None,
        metavar="STATE",
        help="save the training state here to resume (default: no)",
    )
    add("--resume", action="store_true", help="resume from --checkpoint")
    add(
        "--remove-paths",
        type=int,
        default=0,
        metavar="N",
        help="also remove the N convolution paths (node irrep x edge harmonic couplings) that "
        "change the forces least per component they cost, each scored by removing it on the "
        "calibration structures; they stay zero in recovery training and the runtime skips "
        "them (with --stages: spread over the stages)",
    )
    add(
        "--species-rank",
        type=int,
        default=None,
        metavar="R",
        help="also give every element-dependent weight rank R < number of elements (low-rank "
        "species embeddings: the best rank-R projection, kept through recovery training); "
        "saves parameters, not time",
    )
    add(
        "--stages",
        type=int,
        default=1,
        help="prune gradually: N steps of geometrically shrinking width down to --channels, "
        "each followed by --max-steps / N fine-tuning steps on --finetune (state files "
        "STATE.stage<i>); 1: prune once",
    )


def _accuracy(model: Any, structures: list, keys: Any) -> dict[str, float | None]:
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


def _recovery_setup(original: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """The unpruned model as teacher (with --distill-weight) and the recovery TrainConfig
    (``epochs``/``max_steps`` from the options; gradual pruning sets them per stage)."""
    from macelerate.models.loading import load
    from macelerate.train.config import TrainConfig
    from macelerate.train.losses import LossWeights

    teacher = load(original, dtype=args.dtype) if args.distill_weight > 0 else None
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        loss=LossWeights(huber_delta=args.huber_delta), dtype=args.dtype, seed=args.seed,
        teacher_weight=args.distill_weight if teacher else 1.0, checkpoint_path=args.checkpoint,
        resume=args.resume, progress=not args.no_progress,
        keep_dead_paths=args.remove_paths > 0, species_rank=args.species_rank,
    )  # fmt: skip
    return teacher, config


def _recover(pruned: Any, original: Any, args: argparse.Namespace, keys: Any) -> tuple:
    from macelerate.data.labels import read_structures
    from macelerate.train.loop import train

    teacher, config = _recovery_setup(original, args)
    structures = read_structures(args.finetune)
    return train(pruned, structures, config=config, keys=keys, teacher=teacher)


def _gradual(original: Any, args: argparse.Namespace, keys: Any) -> tuple:
    """``--stages N``: the gradually pruned and trained model and its per-stage summary."""
    from macelerate.data.labels import read_structures
    from macelerate.train.gradual_prune import (
        PruneStage,
        channel_schedule,
        gradual_prune,
        model_channels,
        path_schedule,
    )

    widths = channel_schedule(model_channels(original), args.channels, args.stages)
    steps = args.max_steps // args.stages
    paths = path_schedule(args.remove_paths, args.stages)
    stages = [PruneStage(channels=w, steps=steps, remove_paths=n) for w, n in zip(widths, paths)]
    stages[-1] = PruneStage(channels=args.channels, steps=steps, max_L=args.max_L,
                            max_ell=args.max_ell, remove_paths=paths[-1])  # fmt: skip
    teacher, config = _recovery_setup(original, args)
    return gradual_prune(
        original, read_structures(args.finetune), stages=stages, config=config, keys=keys,
        importance=args.importance, calibration_count=args.calibration_count, teacher=teacher,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from macelerate.atomic_io import write_atomically
    from macelerate.compress import prune, recovery_record
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.models.checkpoint import make_provenance
    from macelerate.models.loading import read_model_file
    from macelerate.models.saving import save_model
    from macelerate.records import TransformRecord

    _check_stages(args)
    original, source = read_model_file(args.model)
    if args.species_rank is not None:  # refused before any work
        from macelerate.compress.species_rank import check_rank

        described: Any = original
        check_rank(args.species_rank, len(described.atomic_numbers))
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    calibration = read_structures(args.calibration)[: args.calibration_count] if (
        args.calibration) else None  # fmt: skip
    pruned, report = prune(
        original, channels=args.channels, max_L=args.max_L, max_ell=args.max_ell,
        importance=args.importance, calibration=calibration, label_keys=keys, seed=args.seed,
        progress=not args.no_progress,
    )  # fmt: skip
    summary: dict[str, Any] = {"prune": report.to_dict()}
    if args.remove_paths and args.stages == 1:
        pruned, summary["removed_paths"] = _remove_paths(pruned, calibration, args.remove_paths)
    species_record = None
    if args.species_rank is not None and args.stages == 1:
        from macelerate.compress.species_rank import low_rank_species

        pruned, species = low_rank_species(pruned, args.species_rank, structures=calibration or [])
        summary["species_rank"] = species.to_dict()
        species_record = TransformRecord(
            "species_rank", True, {"rank": args.species_rank}, species.to_dict()
        )
    test = read_structures(args.test) if args.test else None
    if test:
        summary["original_test"] = _accuracy(original, test, keys)
        summary["pruned_test"] = _accuracy(pruned, test, keys)
        summary["ms_per_step_float32"] = {
            "original": _ms_per_step(original, test[0]), "pruned": _ms_per_step(pruned, test[0])
        }  # fmt: skip
    transforms: list[TransformRecord | dict[str, Any]] = [
        *source.transforms_applied,
        report.to_record(),
        *([species_record] if species_record else []),
    ]
    if args.stages > 1:
        pruned, gradual = _gradual(original, args, keys)
        summary["gradual"] = gradual
        options = {
            "channels": args.channels,
            "max_L": args.max_L,
            "max_ell": args.max_ell,
            "importance": args.importance,
            "stages": args.stages,
            "remove_paths": args.remove_paths,
            "species_rank": args.species_rank,
            "data": args.finetune,
        }
        transforms[-1] = TransformRecord("gradual_prune", True, options, gradual)  # fmt: skip
        if test:
            summary["recovered_test"] = _accuracy(pruned, test, keys)
    elif args.finetune:
        pruned, train_report = _recover(pruned, original, args, keys)
        summary["recovery"] = {"steps": train_report.steps, "history": train_report.history}
        transforms.append(recovery_record(data=args.finetune, steps=train_report.steps))
        if test:
            summary["recovered_test"] = _accuracy(pruned, test, keys)
    save_model(args.out, pruned, provenance=make_provenance(args.model), transforms=transforms)
    if args.mace_model:
        import torch

        write_atomically(args.mace_model, lambda tmp: torch.save(pruned, tmp))
    _print(report, summary, args)
    if args.json:
        write_json(args.json, summary)
    return 0


def _remove_paths(model: Any, calibration: Any, count: int) -> tuple[Any, list[dict]]:
    """``model`` without its ``count`` least important convolution paths, and what went."""
    from macelerate.compress.paths import (
        least_important_paths,
        path_ablation_scores,
        remove_conv_paths,
    )

    scores = path_ablation_scores(model, calibration)
    chosen = least_important_paths(scores, count)
    removed = [{"path": p.label, "force_rms_change": scores[p]} for p in chosen]
    return remove_conv_paths(model, chosen), removed


def _check_stages(args: argparse.Namespace) -> None:
    from macelerate.cli.train_options import CommandLineError

    if args.stages < 1:
        raise CommandLineError(f"--stages must be >= 1, got {args.stages}")
    if args.remove_paths < 0:
        raise CommandLineError(f"--remove-paths must be >= 0, got {args.remove_paths}")
    if args.remove_paths and args.stages == 1 and not args.calibration:
        raise CommandLineError(
            "--remove-paths scores each path by removing it on calibration structures: pass "
            "--calibration DATA"
        )
    if args.stages > 1 and (not args.finetune or not args.max_steps or
                            args.max_steps < args.stages):  # fmt: skip
        raise CommandLineError(
            "--stages N trains after every stage: pass --finetune DATA and --max-steps S "
            "(S >= N; each stage trains S / N steps)"
        )


def _print(report: Any, summary: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"parameters {report.parameters_before} -> {report.parameters_after} "
          f"({report.parameters_before / report.parameters_after:.2f}x fewer); multiply-adds "
          f"per atom {report.macs_per_atom_before} -> {report.macs_per_atom_after}")  # fmt: skip
    print(f"removed {len(report.removed)} blocks ({report.importance} importance)")
    stages = summary.get("gradual", {}).get("stages", [])
    paths = summary.get("removed_paths", []) + [r for s in stages for r in s["removed_paths"]]
    for removed in paths:
        print(f"removed path {removed['path']} (force RMS change "
              f"{removed['force_rms_change'] * 1e3:.1f} meV/Å)")  # fmt: skip
    if "species_rank" in summary:
        species = summary["species_rank"]
        change = species["rms_force_change"]
        note = "" if change is None else f", force RMS change {change * 1e3:.1f} meV/Å"
        share = 100 * species["relative_change"]
        print(f"species rank {species['rank']} of {species['n_elements']} elements: weights "
              f"changed by {share:.1f}% (Frobenius){note}")  # fmt: skip
    for stage in summary.get("gradual", {}).get("stages", []):
        final = stage["final_validation"] or {}
        forces = final.get("val_forces_rmse")
        print(f"stage: {stage['channels']} channels, {stage['parameters']} parameters, "
              f"{stage['trained_steps']} steps, validation F RMSE "
              f"{'-' if forces is None else format(forces, '.1f')} meV/Å")  # fmt: skip
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
