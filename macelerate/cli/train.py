"""``macelerate train`` (train or fine-tune on labelled data) and ``macelerate label`` (teacher).

::

    macelerate train --model MODEL_OR_CONFIG --data train.xyz --out trained.pt [--val val.xyz]
    macelerate label TEACHER --structures pool.xyz --out labelled.xyz [--hessian-rows 2]
    macelerate label TEACHER --md start.xyz --temperatures 300 600 --steps 200 --out labelled.xyz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from macelerate.cli.common import add_model_options, load_from_args, write_json

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def _huber(text: str) -> float | None:
    return None if text.lower() in ("none", "mse") else float(text)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    _add_train_parser(subparsers)
    _add_label_parser(subparsers)


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model from a config, or fine-tune a model file, on labelled data"
    )
    parser.add_argument(
        "--model", required=True, metavar="MODEL_OR_CONFIG",
        help="mace-torch .model / macelerate checkpoint to fine-tune, or a JSON/YAML model config "
        "(describe_mace_model format) to train from scratch",
    )  # fmt: skip
    parser.add_argument("--data", required=True, help="training structures (extended XYZ)")
    parser.add_argument("--val", default=None, help="validation structures (default: a split)")
    parser.add_argument("--out", required=True, help="macelerate checkpoint to write")
    parser.add_argument("--energy-key", default="energy", help="default: energy")
    parser.add_argument("--forces-key", default="forces", help="default: forces")
    parser.add_argument("--stress-key", default=None, help="default: no stress")
    parser.add_argument("--teacher", default=None, help="distil: targets from this model")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "plateau", "constant"])
    parser.add_argument("--ema-decay", type=float, default=0.99)
    parser.add_argument("--huber-delta", type=_huber, default=0.01, help="'none' for MSE")
    parser.add_argument("--energy-weight", type=float, default=1.0)
    parser.add_argument("--forces-weight", type=float, default=10.0)
    parser.add_argument("--stress-weight", type=float, default=0.0)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--checkpoint", default=None, metavar="STATE", help="training-state file")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--no-fuse", action="store_true", help="train the unfused model")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--json", default=None, metavar="REPORT", help="write the TrainReport")
    parser.set_defaults(run=run_train)


def _add_label_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "label", help="label structures (or teacher-MD samples) with a teacher model"
    )
    add_model_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--structures", default=None, help="structures to label")
    source.add_argument("--md", default=None, metavar="START", help="sample MD from these")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 600.0, 1200.0])
    parser.add_argument("--steps", type=int, default=200, help="MD steps per temperature")
    parser.add_argument("--interval", type=int, default=20, help="MD steps between snapshots")
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--rattled", type=int, default=5, help="rattled copies per start")
    parser.add_argument("--rattle-std", type=float, default=0.05, help="Å")
    parser.add_argument("--hessian-rows", type=int, default=0, help="atoms per structure")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="extended XYZ file to write")
    parser.set_defaults(run=run_label)


def _read_config(path: Path) -> dict[str, Any]:
    from macelerate.errors import ModelFileError

    try:
        text = path.read_text()
        if path.suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path} is not a readable model config ({error})") from error


def start_model(path: str, *, seed: int) -> tuple[Any, Any]:
    """The model to train: read from a file, or built fresh (seeded) from a config file."""
    import torch

    from macelerate.models.config import build_mace_model, describe_mace_model
    from macelerate.models.loading import read_model_file
    from macelerate.models.potential import ModelSource

    file = Path(path)
    if file.suffix.lower() in CONFIG_SUFFIXES:
        config = _read_config(file)
        with torch.random.fork_rng():  # seeded initial weights; the global RNG is restored
            torch.manual_seed(seed)
            model = build_mace_model(config)
        return model, ModelSource(kind="config", path=str(file))
    model, source = read_model_file(file)
    describe_mace_model(model)  # fail now, not after training, on models we cannot save
    return model, source


def run_train(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.models.checkpoint import file_sha256, make_provenance, save_checkpoint
    from macelerate.models.config import describe_mace_model
    from macelerate.models.loading import load
    from macelerate.train.loop import TrainConfig, train
    from macelerate.train.losses import LossWeights

    model, source = start_model(args.model, seed=args.seed)
    structures = read_structures(args.data)
    val = read_structures(args.val) if args.val else None
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    teacher = load(args.teacher, device=args.device, dtype=args.dtype) if args.teacher else None
    weights = LossWeights(
        energy=args.energy_weight, forces=args.forces_weight, stress=args.stress_weight,
        huber_delta=args.huber_delta,
    )  # fmt: skip
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
        ema_decay=args.ema_decay if args.ema_decay > 0 else None, loss=weights, seed=args.seed,
        device=args.device, dtype=args.dtype, val_fraction=args.val_fraction,
        checkpoint_path=args.checkpoint, resume=args.resume, max_steps=args.max_steps,
        fuse_message_passing=not args.no_fuse, progress=not args.no_progress,
    )  # fmt: skip
    trained, report = train(
        model, structures, config=config, val_structures=val, keys=keys, teacher=teacher
    )
    entry = {
        "transform": "train",
        "data": args.data,
        "data_sha256": file_sha256(args.data),
        "val": args.val,
        "teacher": args.teacher,
        "keys": {"energy": keys.energy, "forces": keys.forces, "stress": keys.stress},
        "config": {k: v for k, v in config.to_dict().items() if k not in ("progress",)},
        "steps": report.steps,
        "final": report.history[-1] if report.history else None,
    }
    save_checkpoint(
        args.out,
        model_config=describe_mace_model(trained),
        state_dict=trained.state_dict(),
        provenance=make_provenance(args.model, started_from=source.kind),
        transforms_applied=[*source.transforms_applied, entry],
    )
    _print_summary(report, args.out)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0


def _print_summary(report: Any, out: str) -> None:
    print(
        f"trained {report.n_parameters} parameters for {report.steps} steps "
        f"({report.epochs_completed} epochs, {report.seconds_per_step:.3f} s/step) on "
        f"{report.n_train} structures"
    )
    last = report.history[-1] if report.history else {}
    if last.get("val_forces_rmse") is not None:
        print(
            f"validation ({report.n_val} structures): E RMSE {last['val_energy_rmse']:.2f} "
            f"meV/atom, F RMSE {last['val_forces_rmse']:.1f} meV/Å"
        )
    if report.stopped_at_max_steps:
        print("stopped at --max-steps; continue with --resume --checkpoint STATE")
    print(f"wrote {out}")


def run_label(args: argparse.Namespace) -> int:
    from macelerate.data.labels import read_structures
    from macelerate.train.teacher import label_structures, sample_structures, write_structures

    teacher = load_from_args(args)
    if args.structures:
        structures = read_structures(args.structures)
    else:
        structures = sample_structures(
            teacher, read_structures(args.md), temperatures=args.temperatures,
            md_steps=args.steps, interval=args.interval, rattle_std=args.rattle_std,
            n_rattled=args.rattled, timestep_fs=args.timestep, seed=args.seed,
        )  # fmt: skip
    labelled = label_structures(teacher, structures, hessian_rows=args.hessian_rows, seed=args.seed)
    write_structures(args.out, labelled)
    rows = f", Hessian rows of {args.hessian_rows} atoms each" if args.hessian_rows else ""
    print(f"labelled {len(labelled)} structures with {args.model}{rows}; wrote {args.out}")
    return 0
