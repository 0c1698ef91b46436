"""``macelerate check MODEL``: the physical checks and the conformance rows, each PASS or FAIL."""

from __future__ import annotations

import argparse
from pathlib import Path

from macelerate.cli.common import (
    add_model_options,
    add_progress_option,
    add_subcommand,
    load_from_args,
    precision_label,
    write_json,
)

SCHEMA = "macelerate-check/1"
FAILED = 1
"""Exit status when a check fails (2 stays for bad input, as in every subcommand)."""

EPILOG = f"""\
Every judged number gets a limit suited to the model's arithmetic (float64, float32 or half
precision; see macelerate/checks/thresholds.py) and a PASS or FAIL; NaN or inf always fails.
The conformance rows (batch, calculator, inputs, outputs) run the model on the structure and two
built-in ones: batched equals single, inputs unchanged, Calculator equals model, output shapes.

exit status:
  0  every check passed
  {FAILED}  a check failed (its row says FAIL; the reason is printed below the table)
  2  bad input (model file, structure, options)
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "check",
        help="physical checks: equivariance, equigrad, gradients, NVE drift, smoothness, "
        "conformance",
        epilog=EPILOG,
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
        "--nve-steps", type=_nve_steps, default=50, help="NVE steps: 0 skips NVE, else >= 2"
    )
    parser.add_argument("--nve-timestep", type=float, default=0.5, help="NVE time step, fs")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the structure, rotations and velocities"
    )
    parser.add_argument(
        "--conformance",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="conformance rows: batched equals single, inputs unchanged, Calculator equals "
        "model, output shapes and dtypes (a few model calls)",
    )
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report as JSON")
    add_progress_option(parser)
    parser.set_defaults(run=run)


def _nve_steps(text: str) -> int:
    steps = int(text)
    if steps == 1 or steps < 0:
        raise argparse.ArgumentTypeError("must be 0 (skip the NVE check) or at least 2")
    return steps


def _fmt(value: float) -> str:
    return f"{value:.3e}" if value == 0 or not 1e-2 <= abs(value) < 1e4 else f"{value:.4g}"


def _print_table(report) -> None:
    print(f"{'check':<12} {'quantity':<22} {'value':>10}  {'unit':<12} {'limit':>10}  verdict")
    for check, quantity, value, unit in report.rows():
        verdict = report.verdict(check, quantity)
        judged = ""
        if verdict is not None:
            judged = f"{'<= ' + _fmt(verdict.limit):>10}  {'PASS' if verdict.passed else 'FAIL'}"
        print(f"{check:<12} {quantity:<22} {_fmt(value):>10}  {unit:<12} {judged}".rstrip())
    failures = report.failures
    if not failures:
        print(f"overall: PASS ({len(report.verdicts)} of {len(report.verdicts)} checks passed)")
        return
    print(f"overall: FAIL ({len(failures)} of {len(report.verdicts)} checks failed)")
    for verdict in failures:
        print(f"  FAIL {verdict.check} {verdict.quantity} = {_fmt(verdict.value)} "
              f"(limit {_fmt(verdict.limit)}): {verdict.hint}")  # fmt: skip


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
        nve_steps=args.nve_steps,
        nve_timestep_fs=args.nve_timestep,
        seed=args.seed,
        conformance=args.conformance,
    )
    report = run_checks(
        potential, atoms, config=config, structure=name, progress=not args.no_progress
    )
    print(
        f"{name}: {report.n_atoms} atoms, {report.dtype}, {report.seconds:.1f} s; "
        f"limits for {report.tolerances.tier} arithmetic"
    )
    _print_table(report)
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
    return 0 if report.passed else FAILED
