"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from macelerate.atomic_io import write_atomically


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``MODEL`` plus ``--device``, ``--dtype`` and ``--head``."""
    parser.add_argument("model", help="mace-torch .model file or macelerate checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument(
        "--dtype", default="float64", choices=["float64", "float32"], help="default: float64"
    )
    parser.add_argument("--head", default=None, help="readout head of a multi-head model")


def load_from_args(args: argparse.Namespace):
    """The Potential the common model options describe."""
    from macelerate.models.loading import load

    return load(args.model, device=args.device, dtype=args.dtype, head=args.head)


def write_json(path: str | Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    text = json.dumps(payload, indent=2, default=str)
    write_atomically(path, lambda tmp: tmp.write_text(text + "\n"))
