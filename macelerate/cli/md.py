"""``macelerate md MODEL STRUCTURE``: molecular dynamics with the fast calculator."""

from __future__ import annotations

import argparse

from macelerate.cli.common import (
    add_model_options,
    add_progress_option,
    add_subcommand,
    load_from_args,
)


def _epilog() -> str:
    from macelerate.md import StabilityLimits

    limits = StabilityLimits()
    return f"""\
The run stops with one error (exit status 2) that names the step and the likely cause when it
blows up: temperature above max({limits.temperature_factor:g} x T, T + \
{limits.temperature_margin_k:g} K), NVE total energy off by
more than {limits.energy_drift_ev_per_atom:g} eV/atom, a force above \
{limits.max_force_ev_per_a:g} eV/Å (or twice the starting one), NaN, or atoms
pushed into each other. --trajectory OUT is written to OUT's stem + ".partial" + suffix
(md.partial.traj for md.traj) and renamed to OUT only when the run completes: a failed run
keeps its frames there and never changes an existing OUT. ns/day leaves out the first
(warm-up) step, whose time is printed apart.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers, "md", help="run NVE or Langevin MD, showing ns/day", epilog=_epilog()
    )
    add_model_options(parser)
    parser.add_argument("structure", help="starting structure (any ASE-readable file; first frame)")
    parser.add_argument("--steps", type=_positive_int, default=100, help="integration steps")
    parser.add_argument("--timestep", type=_positive_float, default=1.0, help="time step, fs")
    parser.add_argument(
        "--temperature",
        type=float,
        default=300.0,
        help="initial (nve) or bath (langevin) temperature, K",
    )
    parser.add_argument(
        "--ensemble",
        choices=["nve", "langevin"],
        default="nve",
        help="nve: velocity Verlet; langevin: constant temperature",
    )
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial velocities and Langevin noise"
    )
    parser.add_argument(
        "--trajectory", default=None, metavar="OUT", help="write frames to this ASE .traj file"
    )
    parser.add_argument(
        "--write-every", type=_positive_int, default=10, help="trajectory stride, steps"
    )
    parser.add_argument(
        "--no-stability-limits",
        action="store_true",
        help="do not stop on temperature, energy-drift or force limits (NaN and overlapping "
        "atoms still stop the run)",
    )
    add_progress_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.calculator import Calculator
    from macelerate.data.labels import read_structures
    from macelerate.md import MDConfig, StabilityLimits, run_md

    atoms = read_structures(args.structure, index="0")[0]
    atoms.calc = Calculator(load_from_args(args))
    config = MDConfig(
        steps=args.steps, timestep_fs=args.timestep, temperature_k=args.temperature,
        ensemble=args.ensemble, friction_per_fs=args.friction, seed=args.seed,
        trajectory=args.trajectory, write_every=args.write_every,
        limits=None if args.no_stability_limits else StabilityLimits(),
    )  # fmt: skip
    result = run_md(atoms, config, progress=not args.no_progress)
    drift = result.total_energy[-1] - result.total_energy[0]
    print(
        f"{args.steps} steps of {len(atoms)} atoms in {result.seconds:.2f} s: "
        f"{result.steps_per_second:.2f} steps/s, {result.ns_per_day:.3f} ns/day (first step "
        f"{result.first_step_seconds:.2f} s, left out); final T {result.temperature[-1]:.0f} K; "
        f"ΔE_total {1e3 * drift / len(atoms):.3f} meV/atom"
    )
    if args.trajectory:
        print(f"wrote {args.trajectory}")
    return 0
