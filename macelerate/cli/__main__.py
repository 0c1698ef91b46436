"""The ``macelerate`` command: one binary, thin subcommands over library functions."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from macelerate._version import __version__
from macelerate.cli import (
    bench,
    check,
    compress,
    convert,
    demo,
    distill,
    evaluate,
    export,
    info,
    md,
    prune,
    report,
    train,
)
from macelerate.errors import MacelerateError

SUBCOMMANDS = (
    info, evaluate, check, md, convert, export, demo, report, bench, train, distill, prune,
    compress,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="macelerate", description="Make MACE interatomic potentials fast, measurably."
    )
    parser.add_argument("--version", action="version", version=f"macelerate {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; bad input exits with status 2 and one message.

    Warnings raised by macelerate itself are printed as one ``macelerate CMD: warning: ...`` line;
    other libraries' warnings keep Python's format.
    """
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.filterwarnings("default", module="macelerate")  # shown, even where errors
        default = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if f"{os.sep}macelerate{os.sep}" in str(filename):
                print(f"macelerate {args.command}: warning: {message}", file=sys.stderr)
            else:
                default(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        try:
            return int(args.run(args) or 0)
        except MacelerateError as error:
            print(f"macelerate {args.command}: error: {error}", file=sys.stderr)
            return 2


if __name__ == "__main__":
    sys.exit(main())
