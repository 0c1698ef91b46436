"""``macelerate train`` (train or fine-tune on labelled data) and ``macelerate label`` (teacher).

::

    macelerate train MODEL_OR_CONFIG --data train.xyz --out trained.pt [--val val.xyz]
    macelerate label TEACHER --structures pool.xyz --out labelled.xyz [--hessian-rows 2]
    macelerate label TEACHER --md start.xyz --temperatures 300 600 --steps 200 --out labelled.xyz

Data files take ASE's index syntax (``train.xyz@:100``, ``start.xyz@-1``). ``--checkpoint STATE``
must not exist unless ``--resume`` continues it: a new run never overwrites a training state.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from macelerate.cli.common import add_model_options, load_from_args, write_json
from macelerate.cli.train_options import (
    CommandLineError,
    add_command,
    add_fit_options,
    add_label_keys,
    check_ranges,
    fit_config,
    huber_delta,
    lever_lines,
    require_finite_model,
    validation_line,
)

CONFIG_SUFFIXES = (".json", ".yaml", ".yml")
_huber = huber_delta  # kept for macelerate/cli/prune.py; new code imports train_options.huber_delta


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    _add_train_parser(subparsers)
    _add_label_parser(subparsers)


def _add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "train", help="train a model from a config, or fine-tune a model file, on "
        "labelled data",
    )  # fmt: skip
    model_help = (
        "mace-torch .model / macelerate checkpoint to fine-tune, or a JSON/YAML model config "
        "(describe_mace_model format) to train from scratch"
    )
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL_OR_CONFIG",
                        help=model_help)  # fmt: skip
    parser.add_argument(
        "--model",
        dest="model_option",
        default=None,
        metavar="MODEL_OR_CONFIG",
        help="the same as the positional MODEL_OR_CONFIG (older spelling)",
    )
    parser.add_argument("--data", required=True,
                        help="training structures (extended XYZ or any ASE format; FILE@:N "
                        "selects structures)")  # fmt: skip
    parser.add_argument(
        "--val", default=None, help="validation structures; default: --val-fraction of --data"
    )
    parser.add_argument("--out", required=True, help="macelerate checkpoint to write")
    add_label_keys(parser, stress=True)
    parser.add_argument(
        "--teacher",
        default=None,
        help="distil: targets are this model's predictions instead of labels",
    )
    fit = parser.add_argument_group("training")
    add_fit_options(fit, batch_size=4, dtype="float64")
    fit.add_argument("--energy-weight", type=float, default=1.0, help="loss weight of E/atom")
    fit.add_argument("--forces-weight", type=float, default=10.0, help="loss weight of forces")
    fit.add_argument("--stress-weight", type=float, default=0.0, help="loss weight of stress")
    fit.add_argument("--no-fuse", action="store_true",
                     help="train the unfused model (slower; for debugging)")  # fmt: skip
    parser.set_defaults(run=run_train)


def _add_label_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "label", help="label structures (or teacher-MD samples) with a teacher model"
    )
    add_model_options(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--structures", default=None, help="structures to label (FILE@:N ok)")
    source.add_argument(
        "--md",
        default=None,
        metavar="START",
        help="run teacher MD from these structures and label the samples",
    )
    md = parser.add_argument_group("teacher MD sampling (--md)")
    md.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 600.0, 1200.0],
                    help="Langevin temperatures (K), one run each")  # fmt: skip
    md.add_argument("--steps", type=int, default=200, help="MD steps per temperature")
    md.add_argument("--interval", type=int, default=20, help="MD steps between snapshots")
    md.add_argument("--timestep", type=float, default=0.5, help="MD time step (fs)")
    md.add_argument("--rattled", type=int, default=5, help="rattled copies per start structure")
    md.add_argument("--rattle-std", type=float, default=0.05,
                    help="rattle displacement per component (Å)")  # fmt: skip
    parser.add_argument(
        "--hessian-rows",
        type=int,
        default=0,
        help="atoms per structure whose Hessian rows the teacher labels",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of MD, rattling and atoms")
    parser.add_argument("--out", required=True, help="extended XYZ file to write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
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

    from macelerate.mace.config import build_mace_model, describe_mace_model
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


def model_argument(args: argparse.Namespace) -> str:
    """The model named positionally or with ``--model`` (exactly one of them)."""
    if args.model and args.model_option and args.model != args.model_option:
        raise CommandLineError(
            f"two models given ({args.model} and --model {args.model_option}); name one"
        )
    model = args.model or args.model_option
    if not model:
        raise CommandLineError(
            "no model given: macelerate train MODEL_OR_CONFIG --data DATA --out OUT"
        )
    return model


def run_train(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.models.checkpoint import file_sha256, make_provenance
    from macelerate.models.loading import load
    from macelerate.models.saving import save_model
    from macelerate.records import TransformRecord
    from macelerate.train.loop import check_state_file, train
    from macelerate.train.losses import LossWeights

    model_path = model_argument(args)
    weights = LossWeights(
        energy=args.energy_weight, forces=args.forces_weight, stress=args.stress_weight,
        huber_delta=args.huber_delta,
    )  # fmt: skip
    config = fit_config(args, loss=weights, fuse_message_passing=not args.no_fuse)
    check_state_file(config)  # before any slow step
    structures = read_structures(args.data)
    val = read_structures(args.val) if args.val else None
    model, source = start_model(model_path, seed=args.seed)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    teacher = load(args.teacher, device=args.device, dtype=args.dtype) if args.teacher else None
    trained, report = train(
        model, structures, config=config, val_structures=val, keys=keys, teacher=teacher
    )
    options = {
        "data": args.data,
        "val": args.val,
        "teacher": args.teacher,
        "keys": {"energy": keys.energy, "forces": keys.forces, "stress": keys.stress},
        "config": {k: v for k, v in config.to_dict().items() if k not in ("progress",)},
    }
    summary = {
        "data_sha256": file_sha256(_file_of(args.data)),
        "steps": report.steps,
        "final": report.final_validation,
    }
    require_finite_model(trained, out=args.out)
    save_model(
        args.out, trained, provenance=make_provenance(model_path, started_from=source.kind),
        transforms=[*source.transforms_applied, TransformRecord("train", True, options, summary)],
    )  # fmt: skip
    _print_summary(report, args.out, ema=config.ema_decay is not None)
    if args.json:
        write_json(args.json, report.to_dict())
    return 0


def _file_of(data: str) -> str:
    """The file of a ``FILE@INDEX`` data argument."""
    from macelerate.data.selection import parse_data_path

    return str(parse_data_path(data)[0])


def _print_summary(report: Any, out: str, *, ema: bool) -> None:
    print(
        f"trained {report.n_parameters} parameters for {report.steps} steps "
        f"({report.epochs_completed} epochs, {report.seconds_per_step:.3f} s/step) on "
        f"{report.n_train} structures"
    )
    if report.skipped_batches:
        print(f"skipped {report.skipped_batches} batches with a NaN/inf loss or gradient")
    line = validation_line(report, ema=ema)
    print(line or "no validation data (pass --val FILE or --val-fraction > 0)")
    stops = {
        "max_steps": "stopped at --max-steps; continue with --resume --checkpoint STATE",
        "max_seconds": "stopped at --max-minutes; continue with --resume --checkpoint STATE",
        "early_stop": "stopped early: the validation loss stalled for --early-stop-patience epochs",
    }
    if report.stop_reason in stops:
        print(stops[report.stop_reason])
    for line in lever_lines(report):
        print(line)
    print(f"wrote {out}")


def _check_label_args(args: argparse.Namespace) -> None:
    check_ranges([
        ("--steps", args.steps, args.steps >= 0, ">= 0"),
        ("--interval", args.interval, args.interval >= 1, ">= 1"),
        ("--timestep", args.timestep, args.timestep > 0, "> 0 fs"),
        ("--temperatures", args.temperatures, min(args.temperatures) >= 0, ">= 0 K"),
        ("--rattled", args.rattled, args.rattled >= 0, ">= 0"),
        ("--rattle-std", args.rattle_std, args.rattle_std >= 0, ">= 0 Å"),
        ("--hessian-rows", args.hessian_rows, args.hessian_rows >= 0, ">= 0"),
    ])  # fmt: skip


def run_label(args: argparse.Namespace) -> int:
    from macelerate.data.labels import read_structures
    from macelerate.train.teacher import label_structures, sample_structures, write_structures

    _check_label_args(args)
    progress = not args.no_progress
    starts = read_structures(args.structures or args.md)
    teacher = load_from_args(args)
    if args.structures:
        structures = starts
    else:
        structures = sample_structures(
            teacher, starts, temperatures=args.temperatures, md_steps=args.steps,
            interval=args.interval, rattle_std=args.rattle_std, n_rattled=args.rattled,
            timestep_fs=args.timestep, seed=args.seed, progress=progress,
        )  # fmt: skip
    labelled = label_structures(
        teacher, structures, hessian_rows=args.hessian_rows, seed=args.seed, progress=progress
    )
    write_structures(args.out, labelled)
    rows = f", Hessian rows of {args.hessian_rows} atoms each" if args.hessian_rows else ""
    print(f"labelled {len(labelled)} structures with {args.model}{rows}; wrote {args.out}")
    return 0
