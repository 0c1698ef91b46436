"""``macelerate report RESULTS.json ... --out DIR``: Markdown and PNG figures from result files."""

from __future__ import annotations

import argparse

from macelerate.cli.common import add_subcommand


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of atoms, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "report", help="report.md and PNG figures from bench and eval JSON files"
    )
    parser.add_argument(
        "results", nargs="+", metavar="RESULTS.json", help="`bench --json` or `eval --json` files"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for report.md and PNGs")
    parser.add_argument(
        "--pareto-atoms",
        type=_positive_int,
        default=None,
        metavar="N",
        help="system size whose speed the Pareto plot uses (default: largest shared size)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.report import build_report

    result = build_report(args.results, out_dir=args.out, pareto_atoms=args.pareto_atoms)
    print(f"wrote {result.markdown_path}")
    for path in result.plot_paths:
        print(f"wrote {path}")
    return 0
