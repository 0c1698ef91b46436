"""What the tabulated radial lever costs in accuracy, on every real model with its own data.

For each model (float64): ``tabulate_radial`` with the default search (hidden-feature tolerance
1e-6, refined until the probe force error is at most 1 meV/Å), then against the exact potential
on ``--structures`` frames of the model's own data: largest and RMS force difference, largest
energy difference per atom; forces against finite differences of the tabulated energy (they must
stay its gradient); NVE drift from 300 K, tabulated and exact, on the first frame; and the force
error at fixed knot counts, to show its convergence (error ~ spacing^3 for forces).

    python benchmarks/tabulated_accuracy.py [--structures 5] [--nve-steps 100]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.checks.gradients import check_gradients  # noqa: E402
from macelerate.checks.nve import check_nve  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.transforms import tabulate_radial  # noqa: E402
from macelerate.transforms.tabulate import force_errors  # noqa: E402

MODELS = {
    "go": ("models/go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz"),
    "gst": ("models/gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz"),
    "solvent": (
        "models/mace_solvent_xtb_tutorial/mace01_swa.model",
        "solvent_xtb_tutorial/solvent_xtb_test.xyz",
    ),
}
KNOT_SWEEP = (250, 500, 1000, 2000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--structures", type=int, default=5)
    parser.add_argument("--nve-steps", type=int, default=100)
    args = parser.parse_args()
    data = require_shared_data()
    results = {}
    for name in args.models:
        model_file, data_file = MODELS[name]
        frames = read_structures(data / data_file, index=f":{args.structures}")
        exact = load(data / model_file, dtype="float64")
        tabulated, report = tabulate_radial(exact, probe=frames)
        sweep = {}
        for knots in KNOT_SWEEP:
            fixed, _ = tabulate_radial(exact, knots=knots)
            sweep[knots] = dict(zip(("max", "rms", "energy"), force_errors(exact, fixed, frames)))
        gradients = check_gradients(tabulated, frames[0])
        nve = {
            label: check_nve(potential, frames[0], steps=args.nve_steps, timestep_fs=0.5)
            for label, potential in (("exact", exact), ("tabulated", tabulated))
        }
        results[name] = {
            "model": model_file,
            "structures": len(frames),
            "report": vars(report),
            "force_error_by_knots_ev_per_a": sweep,
            "finite_difference_force_rel": gradients.force_rel,
            "finite_difference_force_abs": gradients.force_abs,
            "nve_drift_mev_per_atom_ps": {k: v.drift_mev_per_atom_ps for k, v in nve.items()},
            "nve_fluctuation_mev_per_atom": {k: v.fluctuation_mev_per_atom for k, v in nve.items()},
        }
        row = results[name]
        print(
            f"{name}: {report.n_knots} knots, max |ΔF| {1e3 * report.max_force_error:.4f} meV/Å, "
            f"RMS {1e3 * report.rms_force_error:.4f}, max |ΔE| {1e3 * report.max_energy_error:.5f} "
            f"meV/atom; FD rel {row['finite_difference_force_rel']:.1e}; NVE drift "
            f"{row['nve_drift_mev_per_atom_ps']}"
        )
    write_result("tabulated_accuracy", {"environment": environment(), "results": results})


if __name__ == "__main__":
    main()
