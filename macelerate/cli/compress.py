"""``macelerate compress TEACHER --structures START --out DIR``: a validated fast student."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="from a teacher and start structures to a validated fast student with a report "
        "card (sample, label, choose, train, validate; resumable)",
    )
    parser.add_argument("teacher", help="teacher model (mace-torch .model or checkpoint)")
    parser.add_argument("--structures", required=True,
                        help="start structure(s) of your system (FILE or FILE@INDEX)")  # fmt: skip
    parser.add_argument("--out", required=True,
                        help="output folder; re-run with the same inputs to continue a killed "
                        "run")  # fmt: skip
    target = parser.add_argument_group("targets")
    target.add_argument("--target-speedup", type=float, default=10.0,
                        help="student at least this many times faster than the teacher (both "
                        "run by macelerate) on the first start structure; 0: no speed target "
                        "(default: %(default)s)")  # fmt: skip
    target.add_argument("--max-force-error-ratio", type=float, default=None,
                        help="student force RMSE at most this multiple of the teacher's against "
                        "--reference-data")  # fmt: skip
    target.add_argument(
        "--max-force-rmse",
        type=float,
        default=None,
        metavar="MEV",
        help="student force RMSE against the teacher at most this (meV/Å)",
    )
    target.add_argument(
        "--budget-minutes",
        type=float,
        default=90.0,
        help="wall time of the whole run (default: %(default)s)",
    )
    data = parser.add_argument_group("reference data (optional)")
    data.add_argument("--reference-data", default=None,
                      help="labelled structures (e.g. DFT) the student and teacher are judged "
                      "against")  # fmt: skip
    data.add_argument("--energy-key", default="energy", help="energy label name")
    data.add_argument("--forces-key", default="forces", help="forces label name")
    sampling = parser.add_argument_group("sampling")
    sampling.add_argument(
        "--temperatures",
        type=float,
        nargs="+",
        default=[300.0, 600.0],
        help="teacher Langevin MD temperatures, K (default: %(default)s)",
    )
    sampling.add_argument(
        "--md-steps",
        type=int,
        default=600,
        help="steps per temperature and start structure (default: %(default)s)",
    )
    sampling.add_argument(
        "--interval",
        type=int,
        default=10,
        help="steps between kept snapshots (default: %(default)s)",
    )
    sampling.add_argument(
        "--timestep",
        type=float,
        default=None,
        metavar="FS",
        help="MD time step, fs (default: 0.5 with H, 1 up to Ar, else 2)",
    )
    parser.add_argument(
        "--validation-steps",
        type=int,
        default=200,
        help="steps of each validation MD run (default: %(default)s)",
    )
    parser.add_argument(
        "--timing-repeats",
        type=int,
        default=7,
        help="interleaved timing rounds per model (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads for timings")
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling, splits, weights")
    parser.add_argument("--no-export", action="store_true",
                        help="do not write the student as a metatomic model (student_metatomic.pt, "
                        "for LAMMPS, i-PI, ASE, torch-sim via metatomic)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.pipeline.compress import compress
    from macelerate.pipeline.config import CompressConfig, SamplingConfig

    config = CompressConfig(
        target_speedup=args.target_speedup or None,
        max_force_error_ratio=args.max_force_error_ratio,
        max_force_rmse_mev=args.max_force_rmse,
        budget_minutes=args.budget_minutes, threads=args.threads, seed=args.seed,
        validation_md_steps=args.validation_steps, timing_repeats=args.timing_repeats,
        export_metatomic=not args.no_export,
        sampling=SamplingConfig(temperatures=tuple(args.temperatures), md_steps=args.md_steps,
                                interval=args.interval, timestep_fs=args.timestep),
    )  # fmt: skip
    starts = read_structures(args.structures)
    reference = read_structures(args.reference_data) if args.reference_data else None
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    result = compress(args.teacher, starts, args.out, config=config, reference=reference,
                      reference_keys=keys, progress=not args.no_progress)  # fmt: skip
    print(result.verdict)
    print(f"wrote {result.out / 'report.md'}, {result.out / 'summary.json'}"
          + (f", {result.student_path}" if result.student_path else ""))  # fmt: skip
    return 0 if result.met else 1
