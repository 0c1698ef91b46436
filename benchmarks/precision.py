"""What each precision preset costs and buys, on GO-MACE and on the GST model (issue 4).

For every preset (and mace-style uniform float32 for comparison), against the same model in
float64: RMS and largest force deviation and energy deviation per atom on real test structures,
rotation/reflection equivariance error, NVE energy drift, and time per step in this process.
The model's own force RMSE against DFT on the same structures is recorded so that the deviation
can be judged against it. Fresh-process timings: ``macelerate bench --lever precision:<preset>``.

    python benchmarks/precision.py [--models go gst] [--structures 10] [--nve-steps 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.checks.nve import check_nve  # noqa: E402
from macelerate.checks.symmetry import check_symmetry  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.precision import PRESETS  # noqa: E402
from macelerate.transforms import apply_precision  # noqa: E402
from macelerate.transforms.precision import precision_deviation  # noqa: E402

MODELS = {
    "go": (
        "models/go_mace_tutorial/GO_10pct_MACE_swa.model",
        "go_mace_tutorial/test-10.xyz",
        LabelKeys(energy="QM_energy", forces="QM_forces"),
    ),
    "gst": (
        "models/gst_mace_pr325/mace_swa.model",
        "gst_mace_pr325/validate.xyz",
        LabelKeys(energy="energy", forces="forces"),
    ),
}


def median_step_ms(potential, atoms, *, repeats: int = 5, warmup: int = 2) -> float:
    graph = potential.build_graph(atoms)
    for _ in range(warmup):
        potential.forward(graph)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        potential.forward(potential.build_graph(atoms))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def measure(name, candidate, reference, structures, *, nve_steps: int) -> dict:
    deviation = precision_deviation(reference, candidate, structures)
    symmetry = check_symmetry(candidate, structures[0], n_rotations=3)
    nve = check_nve(candidate, structures[0], steps=nve_steps, timestep_fs=0.5)
    row = {
        "variant": name,
        "force_rms_dev_meV_per_A": deviation.force_rms_mev,
        "force_max_dev_meV_per_A": deviation.force_max_mev,
        "energy_dev_max_meV_per_atom": deviation.energy_per_atom_max_mev,
        "energy_dev_rms_meV_per_atom": deviation.energy_per_atom_rms_mev,
        "rotation_force_rel": symmetry.rotation.force_rel,
        "rotation_energy_rel": symmetry.rotation.energy_rel,
        "reflection_force_rel": symmetry.reflection.force_rel,
        "nve_drift_meV_per_atom_ps": nve.drift_mev_per_atom_ps,
        "nve_fluctuation_meV_per_atom": nve.fluctuation_mev_per_atom,
        "ms_per_step": median_step_ms(candidate, structures[0]),
    }
    print({k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    return row


def run_model(key: str, *, n_structures: int, nve_steps: int, presets: list[str]) -> dict:
    model, data, keys = MODELS[key]
    structures = read_structures(SHARED / data)[:n_structures]
    reference = load(SHARED / model, dtype="float64")
    dft = evaluate(reference, structures, keys=keys, source=str(data))
    rows = [measure("fp64-uniform", reference, reference, structures, nve_steps=nve_steps)]
    uniform32 = load(SHARED / model, dtype="float32")
    rows.append(measure("fp32-uniform", uniform32, reference, structures, nve_steps=nve_steps))
    for preset in presets:
        candidate, _ = apply_precision(reference, preset)
        rows.append(measure(preset, candidate, reference, structures, nve_steps=nve_steps))
    return {
        "model": model,
        "data": data,
        "n_structures": len(structures),
        "n_atoms_timed": len(structures[0]),
        "nve": {"steps": nve_steps, "timestep_fs": 0.5, "temperature_k": 300.0},
        "fp64_force_rmse_vs_dft_meV_per_A": dft.force_rmse,
        "fp64_energy_rmse_vs_dft_meV_per_atom": dft.energy_rmse,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--structures", type=int, default=10)
    parser.add_argument("--nve-steps", type=int, default=100)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    args = parser.parse_args()
    require_shared_data()
    results = {
        key: run_model(
            key, n_structures=args.structures, nve_steps=args.nve_steps, presets=args.presets
        )
        for key in args.models
    }
    write_result("precision", {"environment": environment(), "results": results})


if __name__ == "__main__":
    main()
