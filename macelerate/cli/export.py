"""``macelerate export MODEL --format mace|metatomic|symmetrix --out OUT``: write a model for
another engine, checked against macelerate before it is moved into place."""

from __future__ import annotations

import argparse

from macelerate.cli.common import add_subcommand, write_json

EPILOG = """formats:
  mace       a mace-torch .model file (MACECalculator, mace-torch's LAMMPS tools)
  metatomic  a metatomic model (LAMMPS, i-PI, ASE, ... via metatomic); needs metatomic-torch
             and metatomic-ase
  symmetrix  Symmetrix-XL's JSON model; needs pip install 'macelerate[peers]'

Students with direct force/stress heads (node or edge) or a smooth neighbour cap export only to
metatomic (direct heads as non-conservative outputs; the smooth cap runs inside the compiled
model, on a neighbour list to r_max + 2 x cap width)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "export", help="write a model for mace-torch, metatomic or Symmetrix-XL",
        epilog=EPILOG,
    )  # fmt: skip
    add = parser.add_argument
    add("model", help="mace-torch .model file (no code from it runs) or macelerate checkpoint")
    add("--format", required=True, metavar="FORMAT", help="mace, metatomic or symmetrix")
    add("--out", required=True, help="file to write")
    add("--dtype", default="float64", choices=["float64", "float32"], help="precision written")
    add(
        "--allow-uncapped",
        action="store_true",
        help="export a hard-capped student without its neighbour cap (results then differ "
        "where an atom has more neighbours than the cap)",
    )
    add("--head", default=None, help="readout head of a multi-head model (metatomic only)")
    add("--radial", default="exact", choices=["exact", "tabulated"],
        help="metatomic only: tabulated writes the radial MLPs as the tabulated lever's cubic "
        "tables (faster; the report gives their force error against the exact model)")  # fmt: skip
    add("--json", default=None, metavar="REPORT", help="also write the report here as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.export.formats import export_model

    report = export_model(
        args.model, args.out, format=args.format, dtype=args.dtype,
        allow_uncapped=args.allow_uncapped, head=args.head, radial=args.radial,
    )  # fmt: skip
    print(report.summary())
    if args.json:
        write_json(args.json, report.to_dict())
    return 0
