"""Options shared by several subcommands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from macelerate.atomic_io import write_atomically


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Adds ``(default: X)`` to every option's help that does not name its default already.

    Options whose default is None or False (flags, "not given") are left alone; description and
    epilog keep their line breaks.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS
        if unset or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def add_subcommand(
    subparsers: argparse._SubParsersAction,
    name: str,
    *,
    help: str,
    description: str | None = None,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    """A subcommand parser whose ``--help`` shows every option's default."""
    return subparsers.add_parser(
        name, help=help, description=description or help, epilog=epilog,
        formatter_class=HelpFormatter,
    )  # fmt: skip


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: silence the progress bar (printed on stderr)."""
    parser.add_argument(
        "--no-progress", action="store_true", help="do not show the progress bar (on stderr)"
    )


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``MODEL`` plus ``--device``, ``--dtype``, ``--precision`` and ``--head``."""
    parser.add_argument("model", help="mace-torch .model file or macelerate checkpoint")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    add_precision_options(parser)
    parser.add_argument(
        "--head", default=None, help="readout head of a multi-head model (default: the first)"
    )


def add_precision_options(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` (one dtype for the whole model) or ``--precision`` (a per-block preset)."""
    from macelerate.precision.policy import PRESETS

    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--dtype",
        default="float64",
        choices=["float64", "float32"],
        help="one float dtype for the whole model (default: float64)",
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
