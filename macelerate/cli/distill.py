"""``macelerate distill TEACHER --data DATA --out STUDENT``: a fast student from a teacher."""

from __future__ import annotations

import argparse

from macelerate.cli.common import write_json
from macelerate.cli.train import _huber


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "distill", help="train a small, fast student on a teacher's energies and forces"
    )
    parser.add_argument("teacher", help="teacher model (mace-torch .model or checkpoint)")
    parser.add_argument("--data", required=True, help="configurations to label with the teacher")
    parser.add_argument("--val", default=None, help="validation configurations")
    parser.add_argument("--out", required=True, help="student checkpoint to write")
    arch = parser.add_argument_group("student architecture")
    arch.add_argument("--channels", type=int, default=16)
    arch.add_argument("--max-L", type=int, default=1, dest="max_L")
    arch.add_argument("--max-ell", type=int, default=2)
    arch.add_argument("--correlation", type=int, default=2)
    arch.add_argument("--interactions", type=int, default=2)
    arch.add_argument("--r-max", type=float, default=None, help="Å (default: the teacher's)")
    arch.add_argument("--radial-mlp", type=int, nargs="+", default=[32, 32])
    arch.add_argument("--max-neighbors", type=int, default=None, help="per-atom neighbour cap")
    arch.add_argument("--smooth-cap", action="store_true", help="continuous cap (needs K)")
    arch.add_argument("--cap-width", type=float, default=0.2, help="Å, smooth-cap switch width")
    arch.add_argument("--direct-forces", action="store_true", help="forces from an L=1 head")
    arch.add_argument("--direct-stress", action="store_true", help="stress from L=0+2 heads")
    arch.add_argument("--confidence-head", action="store_true", help="per-atom force error bins")
    arch.add_argument("--zbl", action="store_true", help="ZBL pair repulsion")
    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, default=10)
    fit.add_argument("--max-steps", type=int, default=None)
    fit.add_argument("--batch-size", type=int, default=2)
    fit.add_argument("--lr", type=float, default=1e-2)
    fit.add_argument("--huber-delta", type=_huber, default=0.01, help="'none' for MSE")
    fit.add_argument("--forces-weight", type=float, default=10.0)
    fit.add_argument("--stress-weight", type=float, default=0.0)
    fit.add_argument("--equigrad", type=float, default=0.0, help="weight of the equigrad term")
    fit.add_argument("--hessian-weight", type=float, default=0.0)
    fit.add_argument("--hessian-rows", type=int, default=0, help="teacher Hessian atoms/structure")
    fit.add_argument("--teacher-weight", type=float, default=1.0,
                     help="targets = w * teacher + (1 - w) * labels in the data")  # fmt: skip
    fit.add_argument("--energy-key", default="energy")
    fit.add_argument("--forces-key", default="forces")
    fit.add_argument("--dtype", default="float32", choices=["float64", "float32"])
    fit.add_argument("--device", default="cpu")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--checkpoint", default=None, metavar="STATE", help="training-state file")
    fit.add_argument("--resume", action="store_true")
    fit.add_argument("--no-progress", action="store_true")
    fit.add_argument("--json", default=None, metavar="REPORT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.data.labels import LabelKeys, read_structures
    from macelerate.models.checkpoint import file_sha256, make_provenance
    from macelerate.models.loading import load
    from macelerate.models.student import save_student
    from macelerate.train.config import TrainConfig
    from macelerate.train.distill import distill, student_config_for
    from macelerate.train.losses import LossWeights

    teacher = load(args.teacher, device=args.device, dtype=args.dtype)
    structures = read_structures(args.data)
    val = read_structures(args.val) if args.val else None
    architecture = {
        "channels": args.channels, "max_L": args.max_L, "max_ell": args.max_ell,
        "correlation": args.correlation, "num_interactions": args.interactions,
        "r_max": args.r_max or teacher.r_max, "radial_mlp": tuple(args.radial_mlp),
        "max_neighbors": args.max_neighbors, "smooth_cap": args.smooth_cap,
        "cap_width": args.cap_width, "direct_forces": args.direct_forces,
        "direct_stress": args.direct_stress, "confidence_head": args.confidence_head,
        "zbl": args.zbl, "dtype": args.dtype,
    }  # fmt: skip
    student_config = student_config_for(teacher, structures, **architecture)
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, batch_size=args.batch_size, lr=args.lr,
        loss=LossWeights(forces=args.forces_weight, stress=args.stress_weight,
                         hessian=args.hessian_weight, equigrad=args.equigrad,
                         huber_delta=args.huber_delta),
        teacher_weight=args.teacher_weight, teacher_hessian_rows=args.hessian_rows,
        dtype=args.dtype, device=args.device, seed=args.seed, checkpoint_path=args.checkpoint,
        resume=args.resume, progress=not args.no_progress,
    )  # fmt: skip
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    student, report = distill(
        teacher, structures, student=student_config, config=config, val_structures=val,
        keys=keys, seed=args.seed,
    )  # fmt: skip
    entry = {
        "transform": "distill", "teacher": args.teacher, "data": args.data,
        "data_sha256": file_sha256(args.data), "steps": report.steps,
        "config": {k: v for k, v in config.to_dict().items() if k != "progress"},
        "final": report.history[-1] if report.history else None,
    }  # fmt: skip
    save_student(args.out, student, make_provenance(args.teacher), transforms_applied=[entry])
    last = report.history[-1] if report.history else {}
    print(f"student: {sum(p.numel() for p in student.parameters())} parameters, "
          f"{report.steps} steps ({report.seconds_per_step:.2f} s/step)")  # fmt: skip
    if last.get("val_forces_rmse") is not None:
        print(f"validation against the teacher: E RMSE {last['val_energy_rmse']:.2f} meV/atom, "
              f"F RMSE {last['val_forces_rmse']:.1f} meV/Å")  # fmt: skip
    print(f"wrote {args.out}")
    if args.json:
        write_json(args.json, {"student": student_config.to_dict(), **report.to_dict()})
    return 0
