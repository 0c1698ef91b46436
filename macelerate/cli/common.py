"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from macelerate.atomic_io import write_atomically


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``MODEL`` plus ``--device``, ``--dtype``, ``--precision`` and ``--head``."""
    parser.add_argument("model", help="mace-torch .model file or macelerate checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_precision_options(parser)
    parser.add_argument("--head", default=None, help="readout head of a multi-head model")


def add_precision_options(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` (one dtype for the whole model) or ``--precision`` (a per-block preset)."""
    from macelerate.precision.policy import PRESETS

    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--dtype", default="float64", choices=["float64", "float32"], help="default: float64"
    )
    group.add_argument(
        "--precision",
        default=None,
        choices=list(PRESETS),
        help="precision preset (per-block dtypes; see macelerate.PrecisionPolicy) instead of "
        "--dtype",
    )


def precision_label(args: argparse.Namespace) -> str:
    """``--precision`` if given, else ``--dtype`` (for printed and JSON output)."""
    return args.precision or args.dtype


def load_from_args(args: argparse.Namespace):
    """The Potential the common model options describe."""
    from macelerate.models.loading import load

    dtype = None if args.precision else args.dtype
    return load(
        args.model, device=args.device, dtype=dtype, head=args.head, precision=args.precision
    )


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(payload, indent=2, default=str)
    write_atomically(path, lambda tmp: tmp.write_text(text + "\n"))
