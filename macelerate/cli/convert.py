"""``macelerate convert MODEL OUT``: a mace-torch pickle -> a weights-only checkpoint."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert", help="write a weights-only macelerate checkpoint of a mace-torch model"
    )
    parser.add_argument(
        "model", help="mace-torch .model file (read through an allow-list; no code from it runs)"
    )
    parser.add_argument("out", help="checkpoint path to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.models.convert import convert

    report = convert(args.model, args.out)
    print(
        f"wrote {report.out} ({report.n_parameters} parameters); rebuilt model matches the "
        f"original to |ΔE| {report.max_abs_energy_diff:.1e} eV, "
        f"|ΔF| {report.max_abs_force_diff:.1e} eV/Å (float64)"
    )
    return 0
