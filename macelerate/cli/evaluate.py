"""``macelerate eval MODEL --data FILE``: errors against reference labels or another model."""

from __future__ import annotations

import argparse
from pathlib import Path

from macelerate.cli.common import (
    add_model_options,
    add_progress_option,
    add_subcommand,
    load_from_args,
    precision_label,
    write_json,
)

SCHEMA = "macelerate-eval/1"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "eval",
        help="energy/force/stress errors on a labelled data file or against a model",
    )
    add_model_options(parser)
    parser.add_argument(
        "--data", required=True, help="extended XYZ (or any ASE-readable) file of structures"
    )
    parser.add_argument("--energy-key", default="energy", help="label of the reference energy, eV")
    parser.add_argument(
        "--forces-key", default="forces", help="label of the reference forces, eV/Å"
    )
    parser.add_argument(
        "--stress-key",
        default=None,
        help="label of the reference stress, eV/Å³: Voigt-6, 9-vector or 3x3 (default: stress "
        "is not compared)",
    )
    parser.add_argument(
        "--against",
        default=None,
        metavar="REFERENCE_MODEL",
        help="compare with this model's predictions instead of the labels (keys are ignored; "
        "stress is compared when every structure is periodic)",
    )
    parser.add_argument(
        "--against-dtype",
        default="float64",
        choices=["float64", "float32"],
        help="precision of the reference model",
    )
    parser.add_argument(
        "--label", default=None, help="model label in the JSON (default: the model file's stem)"
    )
    parser.add_argument(
        "--batch-size", type=_positive_int, default=8, help="structures per model call"
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    add_progress_option(parser)
    parser.set_defaults(run=run)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.evaluate import evaluate
    from macelerate.models.loading import load

    structures = read_structures(args.data)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    reference = None
    if args.against:
        reference = load(args.against, device=args.device, dtype=args.against_dtype)
    potential = load_from_args(args)
    report = evaluate(
        potential, structures, keys=keys, reference=reference, batch_size=args.batch_size,
        source=args.data, progress=not args.no_progress,
    )  # fmt: skip
    against = f" against {args.against}" if args.against else ""
    label = precision_label(args)
    print(f"{report.n_structures} structures, {report.n_atoms} atoms, {label}{against}")
    print(f"energy  MAE {_fmt(report.energy_mae)}  RMSE {_fmt(report.energy_rmse)}  meV/atom")
    print(f"forces  MAE {_fmt(report.force_mae)}  RMSE {_fmt(report.force_rmse)}  meV/Å")
    for symbol, errors in report.per_element.items():
        print(f"  {symbol:<3}   MAE {_fmt(errors.force_mae)}  RMSE {_fmt(errors.force_rmse)}  "
              f"meV/Å  ({errors.n_atoms} atoms)")  # fmt: skip
    if report.stress_mae is not None:
        print(f"stress  MAE {_fmt(report.stress_mae)}  RMSE {_fmt(report.stress_rmse)}  meV/Å³")
    if args.json:
        payload = {
            "schema": SCHEMA,
            "model": args.model,
            "model_label": args.label or Path(args.model).stem,
            "lever": f"precision:{args.precision}" if args.precision else "exact",
            "data": args.data,
            "dtype": label,
            "against": args.against,
            **report.to_dict(),
        }
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0
