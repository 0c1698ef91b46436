"""``macelerate check MODEL``: symmetry, equigrad, finite-difference, NVE and smoothness checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from macelerate.cli.common import (
    add_model_options,
    load_from_args,
    precision_label,
    write_json,
)

SCHEMA = "macelerate-check/1"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="physical checks: equivariance, equigrad, gradients, NVE drift, smoothness"
    )
    add_model_options(parser)
    parser.add_argument(
        "--structure",
        default=None,
        metavar="FILE",
        help="structure to check (first frame of any ASE-readable file); default: a small "
        "rattled periodic cell of the model's elements",
    )
    parser.add_argument(
        "--nve-steps", type=_nve_steps, default=50, help="0 skips NVE, else >= 2 (default: 50)"
    )
    parser.add_argument("--nve-timestep", type=float, default=0.5, help="fs (default: 0.5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    parser.set_defaults(run=run)


def _nve_steps(text: str) -> int:
    steps = int(text)
    if steps == 1 or steps < 0:
        raise argparse.ArgumentTypeError("must be 0 (skip the NVE check) or at least 2")
    return steps


def _fmt(value: float) -> str:
    return f"{value:.3e}" if value == 0 or not 1e-2 <= abs(value) < 1e4 else f"{value:.4g}"


def run(args: argparse.Namespace) -> int:
    from macelerate.checks.suite import CheckConfig, default_structure, run_checks
    from macelerate.data.labels import read_structures

    atoms = read_structures(args.structure, index="0")[0] if args.structure else None
    potential = load_from_args(args)
    if atoms is None:
        atoms, name = default_structure(potential.atomic_numbers, seed=args.seed), "built-in"
    else:
        name = f"file:{args.structure}"
    config = CheckConfig(
        nve_steps=args.nve_steps, nve_timestep_fs=args.nve_timestep, seed=args.seed
    )
    report = run_checks(potential, atoms, config=config, structure=name)
    print(f"{name}: {report.n_atoms} atoms, {report.dtype}, {report.seconds:.1f} s")
    for check, quantity, value, unit in report.rows():
        print(f"{check:<12} {quantity:<22} {_fmt(value):>10}  {unit}".rstrip())
    if args.json:
        payload = {
            "schema": SCHEMA,
            "model": args.model,
            "model_label": Path(args.model).stem,
            "dtype": precision_label(args),
            "precision": args.precision,
            **report.to_dict(),
        }
        write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0
