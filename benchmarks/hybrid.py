"""Hybrid students beside pure-MACE students and their teacher (issue 14).

For the teacher and every student: energy/force RMSE against DFT on a test set (float64), time
per energy+forces step in float32 on one structure (all models interleaved in one process, so
load drifts hit every model alike), rotation error of energy and forces (3 random rotations,
float64), the equigrad norm ||dE/dG|| (Orb-v3's Δrot) on the first test frames, NVE drift, and
the student's layer kinds and training options read from its own checkpoint record. The
Pareto front over (ms/step, force RMSE) of the students is marked.

    python benchmarks/hybrid.py --teacher T.model --students A.pt B.pt --test test-10.xyz
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.checks.equigrad import check_equigrad  # noqa: E402
from macelerate.checks.nve import check_nve  # noqa: E402
from macelerate.checks.symmetry import check_symmetry  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.pipeline.timing import interleaved_ms  # noqa: E402


def training_options(potential: Any) -> dict[str, Any]:
    """Layer kinds and the invariance-related training options of a student (empty: teacher)."""
    config = getattr(potential.model, "config", None)
    if config is None:
        return {}
    records = [r for r in potential.source.transforms_applied if r.get("name") == "distill"]
    train = records[0]["options"]["config"] if records else {}
    return {
        "layers": list(config.layer_kinds),
        "channels": config.channels,
        "max_L": config.max_L,
        "correlation": config.correlation,
        "num_interactions": config.num_interactions,
        "equigrad_weight": train.get("loss", {}).get("equigrad", 0.0),
        "rotation_augmentation": bool(train.get("rotation_augmentation", False)),
        "steps": records[0]["summary"].get("steps") if records else None,
    }


def pareto(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Students no other student beats on both ms/step and force RMSE."""
    names = [n for n in rows if n != "teacher"]
    front = []
    for name in names:
        ms, err = rows[name]["ms_per_step_float32"], rows[name]["force_rmse_meV_per_A"]
        beaten = any(
            rows[o]["ms_per_step_float32"] <= ms
            and rows[o]["force_rmse_meV_per_A"] <= err
            and (rows[o]["ms_per_step_float32"], rows[o]["force_rmse_meV_per_A"]) != (ms, err)
            for o in names
            if o != name
        )
        if not beaten:
            front.append(name)
    return front


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--students", nargs="+", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--energy-key", default="QM_energy")
    parser.add_argument("--forces-key", default="QM_forces")
    parser.add_argument("--timing-frame", type=int, default=0, help="test frame timed")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved timing rounds")
    parser.add_argument("--nve-steps", type=int, default=100)
    parser.add_argument("--equigrad-frames", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the result name (hybrid<TAG>)")
    args = parser.parse_args()
    require_shared_data()
    torch.set_num_threads(args.threads)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    test = read_structures(args.test)
    timing_atoms = test[args.timing_frame]
    paths = {"teacher": args.teacher, **{Path(s).stem: s for s in args.students}}
    fast = [load(path, dtype="float32") for path in paths.values()]
    samples = interleaved_ms(fast, timing_atoms, repeats=args.repeats)
    speed = {name: statistics.median(s) for name, s in zip(paths, samples)}
    print({name: round(ms, 2) for name, ms in speed.items()}, flush=True)
    rows: dict[str, dict[str, Any]] = {}
    for name, path in paths.items():
        potential = load(path, dtype="float64")
        accuracy = evaluate(potential, test, keys=keys, source=args.test)
        symmetry = check_symmetry(potential, test[0], n_rotations=3)
        equi = [check_equigrad(potential, atoms) for atoms in test[: args.equigrad_frames]]
        nve = check_nve(potential, test[0], steps=args.nve_steps, timestep_fs=0.5)
        rows[name] = {
            "path": path,
            **training_options(potential),
            "parameters": sum(p.numel() for p in potential.model.parameters()),
            "energy_rmse_meV_per_atom": accuracy.energy_rmse,
            "force_rmse_meV_per_A": accuracy.force_rmse,
            "ms_per_step_float32": speed[name],
            "ms_samples_float32": samples[list(paths).index(name)],
            "speedup_vs_teacher": speed["teacher"] / speed[name],
            "rotation_energy_rel": symmetry.rotation.energy_rel,
            "rotation_force_rel": symmetry.rotation.force_rel,
            "equigrad_norm_eV": statistics.mean(e.norm for e in equi),
            "equigrad_rel": statistics.mean(e.relative for e in equi),
            "nve_drift_meV_per_atom_ps": nve.drift_mev_per_atom_ps,
        }
        print(name, {k: v for k, v in rows[name].items() if k != "ms_samples_float32"},
              flush=True)  # fmt: skip
    front = pareto(rows)
    print("pareto front (students):", front)
    payload = {"environment": environment(), "timing_atoms": len(timing_atoms),
               "test": args.test, "models": rows, "pareto_front": front}  # fmt: skip
    write_result("hybrid" + args.tag, payload)


if __name__ == "__main__":
    main()
