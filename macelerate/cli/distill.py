"""``macelerate distill TEACHER --data DATA --out STUDENT``: a fast student from a teacher."""

from __future__ import annotations

import argparse

from macelerate.cli.common import write_json
from macelerate.cli.train_options import (
    CommandLineError,
    add_command,
    add_fit_options,
    add_label_keys,
    check_ranges,
    fit_config,
    lever_lines,
    require_finite_model,
    validation_line,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "distill", help="train a small, fast student on a teacher's energies and forces"
    )
    parser.add_argument("teacher", help="teacher model (mace-torch .model or checkpoint)")
    parser.add_argument(
        "--data", required=True, help="configurations to label with the teacher (FILE@:N ok)"
    )
    parser.add_argument(
        "--val", default=None, help="validation configurations; default: --val-fraction of --data"
    )
    parser.add_argument("--out", required=True, help="student checkpoint to write")
    _add_architecture(parser.add_argument_group("student architecture"))
    fit = parser.add_argument_group("training")
    add_fit_options(fit, batch_size=2, dtype="float32")
    fit.add_argument("--forces-weight", type=float, default=10.0, help="loss weight of forces")
    fit.add_argument("--stress-weight", type=float, default=0.0, help="loss weight of stress")
    fit.add_argument("--equigrad", type=float, default=0.0, help="weight of the equigrad term")
    fit.add_argument("--hessian-weight", type=float, default=0.0,
                     help="loss weight of the teacher's Hessian rows")  # fmt: skip
    fit.add_argument(
        "--hessian-rows",
        type=int,
        default=0,
        help="atoms per structure whose Hessian rows the teacher labels",
    )
    fit.add_argument("--init-from", default=None, metavar="STUDENT",
                     help="start from a trained student (weights-only checkpoint): its "
                     "architecture and weights, with the heads asked for here (--direct-forces, "
                     "--direct-stress, --confidence-head) in place of its own")  # fmt: skip
    fit.add_argument("--correlation-steps", default=None, metavar="N1,N2,...",
                     help="progressive correlation order: train N1 steps at order 1, grow to "
                     "order 2 and train N2 steps, ... up to --correlation (one count per "
                     "order; replaces --max-steps)")  # fmt: skip
    fit.add_argument("--teacher-weight", type=float, default=1.0,
                     help="targets = w * teacher + (1 - w) * labels in the data")  # fmt: skip
    add_label_keys(fit, stress=False)
    parser.set_defaults(run=run)


def _add_architecture(arch: argparse._ArgumentGroup) -> None:
    arch.add_argument("--channels", type=int, default=16, help="channels per irrep")
    arch.add_argument("--max-L", type=int, default=1, dest="max_L", help="hidden max L")
    arch.add_argument("--max-ell", type=int, default=2, help="spherical-harmonics order")
    arch.add_argument("--correlation", type=int, default=2, help="body order of the products")
    arch.add_argument("--interactions", type=int, default=2, help="message-passing layers")
    arch.add_argument("--r-max", type=float, default=None, help="cutoff (Å); default: teacher's")
    arch.add_argument("--radial-mlp", type=int, nargs="+", default=[32, 32],
                      help="hidden widths of the radial MLP")  # fmt: skip
    arch.add_argument("--max-neighbors", type=int, default=None,
                      help="per-atom neighbour cap; default: none")  # fmt: skip
    arch.add_argument("--smooth-cap", action="store_true", help="continuous cap (needs K)")
    arch.add_argument("--cap-width", type=float, default=0.2, help="smooth-cap switch width (Å)")
    arch.add_argument("--direct-forces", nargs="?", const="node", default=None,
                      choices=["node", "edge", "cartesian"], metavar="KIND",
                      help="forces from a head, not -dE/dr: node (L>=1 features, the default), "
                      "edge (equivariant pair forces, any L) or cartesian (non-equivariant pair "
                      "forces)")  # fmt: skip
    arch.add_argument("--edge-head-width", type=int, default=64,
                      help="hidden width of an edge force head's pair MLP")  # fmt: skip
    arch.add_argument("--direct-stress", action="store_true",
                      help="stress from a head (L=0+2 node head; with an edge force head, the "
                      "virial of its pair forces)")  # fmt: skip
    arch.add_argument("--confidence-head", action="store_true", help="per-atom force error bins")
    arch.add_argument("--zbl", action="store_true", help="ZBL pair repulsion")
    arch.add_argument("--layers", default=None, metavar="KIND,KIND",
                      help="one kind per interaction: mace, attention (smoothed, invariant) or "
                      "cartesian (non-equivariant); mace layers first, e.g. mace,attention; "
                      "default: all mace")  # fmt: skip
    arch.add_argument("--attention-heads", type=int, default=4, help="heads of attention layers")


def _check_architecture(args: argparse.Namespace) -> None:
    check_ranges([
        ("--channels", args.channels, args.channels >= 1, ">= 1"),
        ("--max-L", args.max_L, args.max_L >= 0, ">= 0"),
        ("--max-ell", args.max_ell, args.max_ell >= 0, ">= 0"),
        ("--correlation", args.correlation, args.correlation >= 1, ">= 1"),
        ("--interactions", args.interactions, args.interactions >= 1, ">= 1"),
        ("--r-max", args.r_max, args.r_max is None or args.r_max > 0, "> 0 Å"),
        ("--radial-mlp", args.radial_mlp, min(args.radial_mlp) >= 1, "widths >= 1"),
        ("--cap-width", args.cap_width, args.cap_width > 0, "> 0 Å"),
        ("--attention-heads", args.attention_heads, args.attention_heads >= 1, ">= 1"),
        ("--edge-head-width", args.edge_head_width, args.edge_head_width >= 1, ">= 1"),
    ])  # fmt: skip


def _correlation_stages(args: argparse.Namespace) -> list:
    """``--correlation-steps`` as stages (empty without it); a clear error for bad counts."""
    from macelerate.train.errors import TrainConfigError
    from macelerate.train.progressive_correlation import correlation_schedule

    if not args.correlation_steps:
        return []
    try:
        steps = [int(part) for part in args.correlation_steps.split(",")]
        return correlation_schedule(args.correlation, steps)
    except (ValueError, TrainConfigError) as error:
        raise CommandLineError(
            f"--correlation-steps {args.correlation_steps!r}: give one step count >= 1 per "
            f"order 1..--correlation ({args.correlation}), e.g. "
            f"{','.join(['1000'] * args.correlation)} ({error})"
        ) from error


def _initial_student(args: argparse.Namespace, structures: list) -> tuple:
    """``--init-from``: (student with the asked heads and the file's weights, what was copied)."""
    from dataclasses import replace

    from macelerate.models.student import load_student
    from macelerate.train.distill import student_from_init

    source = load_student(args.init_from)
    heads = {
        "direct_forces": args.direct_forces is not None,
        "force_head_kind": args.direct_forces or "node",
        "edge_head_width": args.edge_head_width,
        "direct_stress": args.direct_stress,
        "confidence_head": args.confidence_head,
        "dtype": args.dtype,
    }
    return student_from_init(replace(source.config, **heads), source, seed=args.seed)


def layer_kinds(args: argparse.Namespace) -> tuple[str, ...]:
    """``--layers`` as a tuple of kinds (empty: all mace); StudentConfig checks the kinds."""
    if not args.layers:
        return ()
    return tuple(kind.strip() for kind in args.layers.split(","))


def run(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.data.selection import parse_data_path
    from macelerate.models.checkpoint import file_sha256, make_provenance
    from macelerate.models.loading import load
    from macelerate.models.saving import save_model
    from macelerate.records import TransformRecord
    from macelerate.train.distill import distill, student_config_for
    from macelerate.train.loop import check_state_file
    from macelerate.train.losses import LossWeights
    from macelerate.train.progressive_correlation import progressive_distill

    _check_architecture(args)
    loss = LossWeights(
        forces=args.forces_weight, stress=args.stress_weight, hessian=args.hessian_weight,
        equigrad=args.equigrad, huber_delta=args.huber_delta,
    )  # fmt: skip
    config = fit_config(
        args, loss=loss, teacher_weight=args.teacher_weight, teacher_hessian_rows=args.hessian_rows
    )
    stages = _correlation_stages(args)
    check_state_file(config)  # before any slow step
    structures = read_structures(args.data)
    val = read_structures(args.val) if args.val else None
    teacher = load(args.teacher, device=args.device, dtype=args.dtype)
    architecture = {
        "channels": args.channels, "max_L": args.max_L, "max_ell": args.max_ell,
        "correlation": args.correlation, "num_interactions": args.interactions,
        "r_max": args.r_max or teacher.r_max, "radial_mlp": tuple(args.radial_mlp),
        "max_neighbors": args.max_neighbors, "smooth_cap": args.smooth_cap,
        "cap_width": args.cap_width, "direct_forces": args.direct_forces is not None,
        "force_head_kind": args.direct_forces or "node", "edge_head_width": args.edge_head_width,
        "direct_stress": args.direct_stress, "confidence_head": args.confidence_head,
        "zbl": args.zbl, "dtype": args.dtype, "layers": layer_kinds(args),
        "attention_heads": args.attention_heads,
    }  # fmt: skip
    initial, init_report = None, {}
    if args.init_from:
        initial, init_report = _initial_student(args, structures)
        student_config = initial.config
    else:
        student_config = student_config_for(teacher, structures, **architecture)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    progressive: dict = {}
    if stages and initial is not None:
        raise CommandLineError("--correlation-steps starts from order 1: drop --init-from")
    if stages:
        student, report, progressive = progressive_distill(
            teacher, structures, student=student_config, stages=stages, config=config,
            val_structures=val, keys=keys, seed=args.seed,
        )  # fmt: skip
    else:
        student, report = distill(
            teacher, structures, student=initial or student_config, config=config,
            val_structures=val, keys=keys, seed=args.seed,
        )  # fmt: skip
    options = {
        "teacher": args.teacher,
        "data": args.data,
        "config": {k: v for k, v in config.to_dict().items() if k != "progress"},
    }
    if stages:
        options["correlation_steps"] = [stage.steps for stage in stages]
    if args.init_from:
        options["init_from"] = {"path": args.init_from, **init_report}
    record = TransformRecord(
        "distill", True, options,
        {"data_sha256": file_sha256(parse_data_path(args.data)[0]), "steps": report.steps,
         "final": report.final_validation, **progressive},
    )  # fmt: skip
    require_finite_model(student, out=args.out)
    save_model(args.out, student, provenance=make_provenance(args.teacher), transforms=[record])
    print(f"student: {sum(p.numel() for p in student.parameters())} parameters, "
          f"{report.steps} steps ({report.seconds_per_step:.2f} s/step)")  # fmt: skip
    if report.skipped_batches:
        print(f"skipped {report.skipped_batches} batches with a NaN/inf loss or gradient")
    ema = config.ema_decay is not None
    print(validation_line(report, ema=ema, against=" against the teacher") or
          "no validation data (pass --val FILE or --val-fraction > 0)")  # fmt: skip
    for line in lever_lines(report):
        print(line)
    for stage in progressive.get("stages", []):
        print(
            f"  order {stage['correlation']}: {stage['trained_steps']} steps, "
            f"{stage['seconds_per_step']:.3f} s/step, {stage['parameters']} parameters"
        )
    print(f"wrote {args.out}")
    if args.json:
        write_json(args.json, {"student": student_config.to_dict(), **report.to_dict(),
                               "progressive_correlation": progressive or None})  # fmt: skip
    return 0
