"""Which operators gain from a second thread: per-operator self time of a step at 1 and 2 threads.

One process, one potential; rounds alternate 1 and 2 threads (``--rounds`` each), and each
round profiles ``--steps`` energy + forces steps through ``macelerate.Calculator`` with
``torch.profiler`` after a timed median of ``--repeats`` steps. The table gives each operator's
self time per step (median over rounds) at 1 and 2 threads, its speed-up, and its calls; grouped
by input shapes with ``--shapes`` (the profiler's own overhead then grows).

    python benchmarks/profile_threads.py --model GO_10pct_MACE_swa.model --structure test-10.xyz \\
        --atoms 1344 --radial tabulated [--dtype float32] [--rounds 2] [--shapes]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import ase.io
import torch
from ase.calculators.calculator import all_changes

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, write_result  # noqa: E402

import macelerate  # noqa: E402
from macelerate.bench.systems import repeat_structure  # noqa: E402

THREADS = (1, 2)


def _profile(step, steps: int, shapes: bool) -> dict[str, tuple[float, int]]:
    """{operator (and shapes): (self ms per step, calls per step)}."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities, record_shapes=shapes) as profile:
        for _ in range(steps):
            step()
    table = {}
    for event in profile.key_averages(group_by_input_shape=shapes):
        key = f"{event.key} {event.input_shapes}" if shapes else event.key
        table[key] = (event.self_cpu_time_total / 1e3 / steps, event.count // steps)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--structure", required=True, help="FILE (first frame) to repeat")
    parser.add_argument("--atoms", type=int, default=0, help="repeat to about this many atoms")
    parser.add_argument("--radial", default="exact", choices=["exact", "tabulated"])
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--shapes", action="store_true")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    atoms = ase.io.read(args.structure, 0)
    if args.atoms > len(atoms):
        atoms = repeat_structure(atoms, args.atoms, name=Path(args.structure).name).atoms
    calculator = macelerate.Calculator(
        macelerate.load(args.model, dtype=args.dtype, radial=args.radial)
    )

    def step() -> None:
        calculator.calculate(atoms, ["energy", "forces"], all_changes)

    wall: dict[int, list[float]] = defaultdict(list)
    tables: dict[int, list[dict[str, tuple[float, int]]]] = defaultdict(list)
    for _ in range(args.rounds):
        for threads in THREADS:
            torch.set_num_threads(threads)
            for _ in range(3):
                step()
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                step()
                times.append(1e3 * (time.perf_counter() - start))
            wall[threads].append(statistics.median(times))
            tables[threads].append(_profile(step, args.steps, args.shapes))
    keys = set().union(*(table for runs in tables.values() for table in runs))

    def ms(threads: int, key: str) -> float:
        return statistics.median(table.get(key, (0.0, 0))[0] for table in tables[threads])

    rows = []
    for key in keys:
        one, two = ms(1, key), ms(2, key)
        calls = max(table.get(key, (0.0, 0))[1] for table in tables[1])
        rows.append({"operator": key, "calls": calls, "ms_1_thread": one, "ms_2_threads": two,
                     "speedup": one / two if two > 0 else None})  # fmt: skip
    rows.sort(key=lambda row: -row["ms_1_thread"])
    summary = {
        "wall_ms": {str(t): statistics.median(wall[t]) for t in THREADS},
        "self_ms": {str(t): sum(ms(t, key) for key in keys) for t in THREADS},
        "operator_calls_per_step": sum(row["calls"] for row in rows),
    }
    print(f"{len(atoms)} atoms, wall ms per step: {summary['wall_ms']}, "
          f"operator self ms: {summary['self_ms']}")  # fmt: skip
    print(f"{'operator':60s} {'calls':>6s} {'1t ms':>8s} {'2t ms':>8s} {'×':>5s}")
    for row in rows[: args.top]:
        speedup = "-" if row["speedup"] is None else f"{row['speedup']:.2f}"
        print(f"{row['operator'][:60]:60s} {row['calls']:6d} {row['ms_1_thread']:8.2f} "
              f"{row['ms_2_threads']:8.2f} {speedup:>5s}")  # fmt: skip
    write_result(f"profile_threads{args.tag}", {
        "environment": environment(), "model": args.model, "atoms": len(atoms),
        "radial": args.radial, "dtype": args.dtype, "rounds": args.rounds, "summary": summary,
        "operators": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
