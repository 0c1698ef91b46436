"""``macelerate demo``: the main job on the embedded default model, no downloads."""

from __future__ import annotations

import argparse

from macelerate.cli.common import add_subcommand
from macelerate.precision.policy import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "demo", help="MD with the embedded model: macelerate vs mace-torch's calculator"
    )
    parser.add_argument("--steps", type=int, default=20, help="MD steps per engine")
    parser.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64", help="precision of every run"
    )
    parser.add_argument(
        "--precision",
        default=None,
        choices=list(PRESETS),
        help="also run macelerate under this precision preset (a third row)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="another H/C/O model instead of the embedded one "
        "(default: macelerate/demo/go_small.pt)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.demo.run import run_demo

    run_demo(steps=args.steps, dtype=args.dtype, model_path=args.model, precision=args.precision)
    return 0
