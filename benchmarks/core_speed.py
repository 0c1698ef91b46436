"""CPU time per step: macelerate.Calculator against mace-torch's MACECalculator.

Each (engine, model, structure, dtype) runs in its own fresh Python process, so allocator state and
caches of one engine never help the other. Per step the positions move by ~1e-3 Å (as in MD) so no
result is reused. Engines:

* ``macelerate``: ``Potential.build_graph`` (vesin) + ``Potential.forward``, timed apart; forces
  only (what MD needs) and forces + stress (what MACECalculator always computes).
* ``mace-torch``: ``MACECalculator.calculate``; its graph part (``_atoms_to_batch``: matscipy,
  AtomicData, collation) is timed apart on the same configurations.
* ``mace-torch+malloc``: the same, in a process where macelerate's allocator tuning was applied
  first: it shows how much of the gap is the allocator and how much the rest of the pipeline.
* ``macelerate`` ran with ``fuse_message_passing=False`` (mace-torch's own interaction modules)
  and ``macelerate+fused`` with the fused edge tensor product of
  :mod:`macelerate.runtime.fused_conv`, which is now ``load``'s default.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402

CASES = [
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz", 0, 1),
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz", 0, 2),
    ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz", "largest", 1),
]
ENGINES = ("mace-torch", "mace-torch+malloc", "macelerate", "macelerate+fused")


def _structure(dataset: str, frame, repeat: int):
    import ase.io

    frames = ase.io.read(SHARED / dataset, ":")
    atoms = max(frames, key=len) if frame == "largest" else frames[frame]
    return atoms * (repeat, repeat, repeat) if repeat > 1 else atoms


def _cpu() -> tuple[float, float]:
    times = os.times()
    return times.user, times.system


def worker(engine: str, model: str, dataset: str, frame, repeat: int, dtype: str, repeats: int):
    """Time one engine; print one JSON line."""
    atoms = _structure(dataset, frame, repeat)
    path = str(SHARED / "models" / model)
    rng = np.random.default_rng(0)
    start_positions = atoms.positions.copy()

    def move() -> None:
        atoms.positions = start_positions + rng.normal(scale=1e-3, size=start_positions.shape)

    rows: dict[str, list[float]] = {}

    def timed(name: str, fn) -> None:
        t0, c0 = time.perf_counter(), _cpu()
        fn()
        t1, c1 = time.perf_counter(), _cpu()
        rows.setdefault(name, []).append(t1 - t0)
        rows.setdefault(name + "_user", []).append(c1[0] - c0[0])
        rows.setdefault(name + "_sys", []).append(c1[1] - c0[1])

    if engine.startswith("mace-torch"):
        if engine.endswith("+malloc"):
            from macelerate.runtime.allocator import tune_malloc_for_tensors

            tune_malloc_for_tensors()
        from mace.calculators import MACECalculator

        calc = MACECalculator(model_paths=path, device="cpu", default_dtype=dtype)
        steps = {
            "step": lambda: calc.calculate(atoms, ["energy", "forces", "stress"]),
            "graph": lambda: calc._atoms_to_batch(atoms),
        }
    else:
        import macelerate

        potential = macelerate.load(
            path, dtype=dtype, fuse_message_passing=engine.endswith("+fused")
        )
        graph_box = {}

        def forces_only():
            potential.forward(potential.build_graph(atoms))

        steps = {
            "step": forces_only,
            "step_with_stress": lambda: potential.forward(
                potential.build_graph(atoms), compute_stress=True
            ),
            "graph": lambda: graph_box.update(g=potential.build_graph(atoms)),
            "model": lambda: potential.forward(graph_box["g"]),
        }
    for i in range(repeats + 3):  # three warm-up rounds (e3nn's TorchScript warms up), unrecorded
        for name, fn in steps.items():
            move()
            if i < 3:
                fn()
            else:
                timed(name, fn)
    summary = {"n_atoms": len(atoms), "median_s": {k: float(np.median(v)) for k, v in rows.items()}}
    print(json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--worker", nargs=6, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        engine, model, dataset, frame, repeat, dtype = args.worker
        frame = frame if frame == "largest" else int(frame)
        worker(engine, model, dataset, frame, int(repeat), dtype, args.repeats)
        return
    require_shared_data()
    results = []
    for model, dataset, frame, repeat in CASES:
        for dtype in args.dtypes.split(","):
            for engine in ENGINES:
                command = [sys.executable, __file__, "--repeats", str(args.repeats), "--worker",
                           engine, model, dataset, str(frame), str(repeat), dtype]  # fmt: skip
                out = subprocess.run(command, capture_output=True, text=True, check=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                row.update(
                    engine=engine,
                    model=model,
                    dtype=dtype,
                    structure=f"{dataset}[{frame}]x{repeat}",
                )
                results.append(row)
                print(json.dumps(row), flush=True)
    write_result("core_speed", {**environment(), "repeats": args.repeats, "results": results})


if __name__ == "__main__":
    main()
