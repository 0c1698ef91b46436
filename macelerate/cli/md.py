"""``macelerate md MODEL STRUCTURE``: molecular dynamics with the fast calculator."""

from __future__ import annotations

import argparse

from macelerate.cli.common import add_model_options, load_from_args


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("md", help="run NVE or Langevin MD, showing ns/day")
    add_model_options(parser)
    parser.add_argument("structure", help="starting structure (any ASE-readable file; first frame)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--timestep", type=float, default=1.0, help="fs (default: 1.0)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default: 300)")
    parser.add_argument("--ensemble", choices=["nve", "langevin"], default="nve")
    parser.add_argument("--friction", type=float, default=0.01, help="Langevin, 1/fs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectory", default=None, metavar="OUT", help="ASE .traj output")
    parser.add_argument("--write-every", type=int, default=10, help="trajectory stride (steps)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.calculator import Calculator
    from macelerate.data.labels import read_structures
    from macelerate.md import MDConfig, run_md

    atoms = read_structures(args.structure, index="0")[0]
    atoms.calc = Calculator(load_from_args(args))
    config = MDConfig(
        steps=args.steps, timestep_fs=args.timestep, temperature_k=args.temperature,
        ensemble=args.ensemble, friction_per_fs=args.friction, seed=args.seed,
        trajectory=args.trajectory, write_every=args.write_every,
    )  # fmt: skip
    result = run_md(atoms, config)
    drift = result.total_energy[-1] - result.total_energy[0]
    print(
        f"{args.steps} steps of {len(atoms)} atoms in {result.seconds:.2f} s: "
        f"{result.steps_per_second:.2f} steps/s, {result.ns_per_day:.3f} ns/day; "
        f"final T {result.temperature[-1]:.0f} K; ΔE_total {1e3 * drift / len(atoms):.3f} meV/atom"
    )
    return 0
