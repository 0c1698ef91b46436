"""``macelerate demo``: the main job on the embedded default model, no downloads."""

from __future__ import annotations

import argparse

from macelerate.precision.policy import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="MD with the embedded model: macelerate vs mace-torch's calculator"
    )
    parser.add_argument("--steps", type=int, default=20, help="MD steps per engine (default: 20)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument(
        "--precision",
        default=None,
        choices=list(PRESETS),
        help="also run macelerate under this precision preset (a third row)",
    )
    parser.add_argument(
        "--model", default=None, help="another H/C/O model instead of the embedded one"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.demo.run import run_demo

    run_demo(
        steps=args.steps, dtype=args.dtype, model_path=args.model, precision=args.precision
    )
    return 0
