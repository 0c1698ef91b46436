"""Exported metatomic models on real structures: agreement with macelerate and time per step.

Each model (a mace-torch file or a student, e.g. a smooth-cap student whose cap runs inside the
exported TorchScript model) is written with ``export_metatomic`` in each dtype, then run through
metatomic-ase's ``MetatomicCalculator`` (non-conservative outputs for direct-head students, as
macelerate runs them) and ``macelerate.Calculator`` on the first ``--frames``
structures of ``--test``: largest energy and force differences, and milliseconds per energy +
forces step (both through ASE's ``calculate``), interleaved in one process on the first frame
(median of ``--repeats`` rounds). With ``--radial exact tabulated``, each model is also exported
with the tabulated lever's tables inside and compared with macelerate's tabulated potential;
all four engines are timed in one interleave.

    python benchmarks/metatomic_export.py --models teacher=GO.model mace32=mace32.pt \\
        --test test-10.xyz [--frames 5] [--dtypes float64 float32] [--repeats 9] [--threads 2] \\
        [--radial exact tabulated]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import all_changes

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, write_result  # noqa: E402

from macelerate import Calculator  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.export import export_metatomic  # noqa: E402
from macelerate.export.metatomic import non_conservative_mode  # noqa: E402
from macelerate.export.source import read_source  # noqa: E402

WARMUP = 2


def _results(calculator, atoms) -> tuple[float, np.ndarray]:
    calculator.calculate(atoms, ["energy", "forces"], all_changes)
    return float(calculator.results["energy"]), np.asarray(calculator.results["forces"])


def _interleaved_ms(calculators, atoms, repeats: int) -> list[list[float]]:
    for calculator in calculators:
        for _ in range(WARMUP):
            _results(calculator, atoms)
    samples: list[list[float]] = [[] for _ in calculators]
    for _ in range(repeats):
        for i, calculator in enumerate(calculators):
            gc.collect()
            start = time.perf_counter()
            _results(calculator, atoms)
            samples[i].append(1e3 * (time.perf_counter() - start))
    return samples


def measure(
    name: str, path: str, frames, dtype: str, repeats: int, folder: Path, radials: list[str]
) -> dict:
    """One model in one dtype: per radial mode, the export and its agreement with macelerate
    run with the same lever; all engines timed in one interleave."""
    from metatomic_ase import MetatomicCalculator

    direct = non_conservative_mode(read_source(path))  # direct heads: compare their forces
    engines, per_radial = {}, {}
    for radial in radials:
        out = folder / f"{name}_{dtype}_{radial}.pt"
        start = time.perf_counter()
        report = export_metatomic(path, out, dtype=dtype, radial=radial)
        export_seconds = time.perf_counter() - start
        pair = {
            f"metatomic-ase {radial}": MetatomicCalculator(
                str(out), device="cpu", non_conservative=direct
            ),
            f"macelerate {radial}": Calculator(path, dtype=dtype, radial=radial),
        }
        energy_diff, force_diff = 0.0, 0.0
        for atoms in frames:
            (e_meta, f_meta), (e_ours, f_ours) = (_results(c, atoms) for c in pair.values())
            energy_diff = max(energy_diff, abs(e_meta - e_ours))
            force_diff = max(force_diff, float(np.abs(f_meta - f_ours).max()))
        engines.update(pair)
        per_radial[radial] = {
            "changes": list(report.changes),
            "export_seconds": export_seconds,
            "export_check_max_abs_force_diff": report.agreement.max_abs_force_diff,
            "max_abs_energy_diff_eV": energy_diff,
            "max_abs_force_diff_eV_per_A": force_diff,
        }
    samples = _interleaved_ms(list(engines.values()), frames[0], repeats)
    ms = {engine: statistics.median(s) for engine, s in zip(engines, samples)}
    for radial, row in per_radial.items():
        row["metatomic_over_macelerate"] = (
            ms[f"metatomic-ase {radial}"] / ms[f"macelerate {radial}"]
        )
    return {
        "model": path,
        "dtype": dtype,
        "frames": len(frames),
        "radial": per_radial,
        "timing_atoms": len(frames[0]),
        "ms_per_step": ms,
        "ms_samples": dict(zip(engines, samples)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, metavar="NAME=PATH")
    parser.add_argument("--test", required=True)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--radial", nargs="+", default=["exact"], choices=["exact", "tabulated"])
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = read_structures(args.test, index=f":{args.frames}")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for spec in args.models:
            name, path = spec.split("=", 1)
            for dtype in args.dtypes:
                row = {"name": name, **measure(name, path, frames, dtype, args.repeats,
                                               Path(folder), args.radial)}  # fmt: skip
                print({k: v for k, v in row.items() if k != "ms_samples"}, flush=True)
                rows.append(row)
    write_result(f"metatomic_export{args.tag}", {"environment": environment(),
                                                 "test": args.test, "rows": rows})  # fmt: skip


if __name__ == "__main__":
    main()
