"""Distilled students beside their teacher on real data (issue 5).

For the teacher and each student: energy/force RMSE against DFT on a test set, time per step in
the same process (rounds interleaved, so load drifts hit every model alike), NVE energy drift,
rotation equivariance error and, for students with a confidence head, the Spearman correlation
of the predicted per-atom force error with the true one (|F_student - F_DFT|). For the first
hard-capped student, a smooth-capped twin with the same weights is built and both are moved
along the same path at two step sizes: a continuous potential's largest jumps shrink with the
step, a discontinuous one's do not.

    python benchmarks/students.py --teacher T.model --students A.pt B.pt --test test.xyz
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.checks.nve import check_nve  # noqa: E402
from macelerate.checks.smoothness import check_smoothness  # noqa: E402
from macelerate.checks.symmetry import check_symmetry  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures, require_label  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.models.student import Student, build_student, load_student  # noqa: E402


def interleaved_ms(potentials: dict, atoms, *, rounds: int) -> dict[str, float]:
    graphs = {name: p.build_graph(atoms) for name, p in potentials.items()}
    for name, p in potentials.items():
        p.forward(graphs[name])  # warm-up
    times: dict[str, list[float]] = {name: [] for name in potentials}
    for _ in range(rounds):
        for name, p in potentials.items():
            start = time.perf_counter()
            p.forward(p.build_graph(atoms))
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def confidence_spearman(potential, structures, keys: LabelKeys) -> float | None:
    if not potential.has_confidence:
        return None
    predicted, true = [], []
    for index, atoms in enumerate(structures):
        out = potential.forward(potential.build_graph(atoms))
        reference = require_label(atoms, keys.forces, index=index, path="test")
        error = np.linalg.norm(out["forces"].double().numpy() - reference, axis=1)
        predicted.append(out["force_confidence"].double().numpy())
        true.append(error)
    return float(spearmanr(np.concatenate(predicted), np.concatenate(true)).statistic)


def smooth_twin(student: Student) -> Student:
    """The same student with the smooth cap (same k, same weights)."""
    twin = build_student(replace(student.config, smooth_cap=True))
    state = student.state_dict()
    target = twin.state_dict()
    mapped = {}
    for key in target:
        source = key.replace("radial_embedding.inner.", "radial_embedding.")
        mapped[key] = state[source] if source in state else state[key]
    twin.load_state_dict(mapped)
    return twin.to(student.dtype)


def swap_path(atoms, *, atom: int, k: int) -> tuple[np.ndarray, float]:
    """Direction and span that move ``atom`` towards its (k+1)-th neighbour past its k-th."""
    vectors = atoms.get_distances(atom, range(len(atoms)), mic=True, vector=True)
    distances = np.linalg.norm(vectors, axis=1)
    order = np.argsort(distances)[1:]  # skip the atom itself
    kth, next_one = order[k - 1], order[k]
    gap = distances[next_one] - distances[kth]
    return vectors[next_one] / distances[next_one], 2.0 * gap + 0.02


def continuity(student: Student, atoms, *, atom: int = 5) -> dict:
    """Jumps along a path on which the k-th and (k+1)-th neighbours of ``atom`` swap."""
    direction, span = swap_path(atoms, atom=atom, k=student.config.max_neighbors)
    rows: dict = {"atom": atom, "span_A": span}
    for name, model in (("hard", student), ("smooth", smooth_twin(student))):
        potential = load(model, dtype="float64")
        for points in (51, 201):
            result = check_smoothness(
                potential, atoms, atom=atom, direction=direction, start=0.0, span=span,
                n_points=points,
            )  # fmt: skip
            rows[f"{name}_{points}"] = {
                "step_A": result.step,
                "max_force_jump_eV_per_A": result.max_force_jump,
                "max_energy_jump_eV": result.max_energy_slope * result.step,
                "force_ratio": result.force_ratio,
            }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--students", nargs="+", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--energy-key", default="QM_energy")
    parser.add_argument("--forces-key", default="QM_forces")
    parser.add_argument("--nve-steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--continuity-only", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result name (students<TAG>)")
    parser.add_argument("--speed-only", type=int, default=0, metavar="REPEATS",
                        help="only time teacher and students, REPEATS times")  # fmt: skip
    args = parser.parse_args()
    require_shared_data()
    torch.set_num_threads(args.threads)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    test = read_structures(args.test)
    if args.continuity_only:
        student = next(s for s in map(load_student, args.students) if s.config.max_neighbors)
        result = continuity(student.double(), test[0])
        print(result)
        write_result("students_continuity", {"environment": environment(), "student":
                     args.students[0], "cap_continuity": result})  # fmt: skip
        return
    timing_atoms = min(test, key=lambda a: abs(len(a) - 250))
    paths = {"teacher": args.teacher, **{Path(s).stem: s for s in args.students}}
    fast = {name: load(path, dtype="float32") for name, path in paths.items()}
    speed = interleaved_ms(fast, timing_atoms, rounds=args.rounds)
    if args.speed_only:
        repeats = [speed] + [interleaved_ms(fast, timing_atoms, rounds=args.rounds)
                             for _ in range(args.speed_only - 1)]  # fmt: skip
        for ms in repeats:
            print({k: round(v, 1) for k, v in ms.items()}, flush=True)
        write_result("students_speed", {"environment": environment(), "n_atoms":
                     len(timing_atoms), "rounds": args.rounds, "repeats_ms": repeats})  # fmt: skip
        return
    rows = {}
    for name, path in paths.items():
        potential = load(path, dtype="float64")
        accuracy = evaluate(potential, test, keys=keys, source=args.test)
        nve = check_nve(potential, test[0], steps=args.nve_steps, timestep_fs=0.5)
        symmetry = check_symmetry(potential, test[0], n_rotations=3)
        rows[name] = {
            "path": path,
            "parameters": sum(p.numel() for p in potential.model.parameters()),
            "energy_rmse_meV_per_atom": accuracy.energy_rmse,
            "force_rmse_meV_per_A": accuracy.force_rmse,
            "ms_per_step_float32": speed[name],
            "speedup_vs_teacher": speed["teacher"] / speed[name],
            "nve_drift_meV_per_atom_ps": nve.drift_mev_per_atom_ps,
            "rotation_force_rel": symmetry.rotation.force_rel,
            "confidence_spearman": confidence_spearman(potential, test, keys),
        }
        print(name, rows[name], flush=True)
    students = [load_student(path) for path in args.students]
    capped = next((s for s in students if s.config.max_neighbors and not s.config.smooth_cap
                   and not s.config.direct_forces), None)  # fmt: skip
    smooth = continuity(capped.double(), test[0]) if capped is not None else None
    print("continuity", smooth, flush=True)
    payload = {"environment": environment(), "timing_atoms": len(timing_atoms),
               "test": args.test, "models": rows, "cap_continuity": smooth}  # fmt: skip
    write_result("students" + args.tag, payload)


if __name__ == "__main__":
    main()
