"""``macelerate eval MODEL --data FILE``: errors against reference labels."""

from __future__ import annotations

import argparse

from macelerate.cli.common import add_model_options, load_from_args, write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="energy/force/stress errors on a labelled data file"
    )
    add_model_options(parser)
    parser.add_argument("--data", required=True, help="extended XYZ (or any ASE-readable) file")
    parser.add_argument("--energy-key", default="energy", help="default: energy")
    parser.add_argument("--forces-key", default="forces", help="default: forces")
    parser.add_argument("--stress-key", default=None, help="default: stress not evaluated")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    parser.set_defaults(run=run)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def run(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.evaluate import evaluate

    structures = read_structures(args.data)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key, stress=args.stress_key)
    potential = load_from_args(args)
    report = evaluate(
        potential, structures, keys=keys, batch_size=args.batch_size, source=args.data
    )
    print(f"{report.n_structures} structures, {report.n_atoms} atoms, {args.dtype}")
    print(f"energy  MAE {_fmt(report.energy_mae)}  RMSE {_fmt(report.energy_rmse)}  meV/atom")
    print(f"forces  MAE {_fmt(report.force_mae)}  RMSE {_fmt(report.force_rmse)}  meV/Å")
    if report.stress_mae is not None:
        print(f"stress  MAE {_fmt(report.stress_mae)}  RMSE {_fmt(report.stress_rmse)}  meV/Å³")
    if args.json:
        write_json(args.json, {"model": args.model, "data": args.data, **report.to_dict()})
        print(f"wrote {args.json}")
    return 0
