"""Exactness of macelerate against mace-torch's MACECalculator on the shared real models (float64).

For every model in ../shared/data/models and 20 real structures of its own data set, this records
the largest |ΔE| (eV), |ΔF| (eV/Å, per component) and, for periodic data, |Δσ| (eV/Å³).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import ase.io
import numpy as np
from _common import environment, require_shared_data, write_result

CASES = [
    ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz"),
    ("go_mace_tutorial/GO_full_MACE_swa.model", "go_mace_tutorial/test-10.xyz"),
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz"),
    ("mace_solvent_xtb_tutorial/mace01_swa.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz"),
    ("mace_solvent_xtb_tutorial/mace01.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz"),
    # mace-torch 0.3.16's MACECalculator cannot call this TorchScript export made with mace 0.3.6
    # (its scripted forward lacks compute_edge_forces); the reference is the same model's pickle.
    (
        "mace_solvent_xtb_tutorial/mace01_swa_compiled.model",
        "solvent_xtb_tutorial/solvent_xtb_test.xyz",
        "mace_solvent_xtb_tutorial/mace01_swa.model",
    ),
    (
        "mace_solvent_xtb_tutorial/mace02_com1_swa.model",
        "solvent_xtb_tutorial/solvent_xtb_test.xyz",
    ),
    (
        "mace_solvent_xtb_tutorial/mace02_com2_swa.model",
        "solvent_xtb_tutorial/solvent_xtb_test.xyz",
    ),
    (
        "mace_solvent_xtb_tutorial/mace02_com3_swa.model",
        "solvent_xtb_tutorial/solvent_xtb_test.xyz",
    ),
]


def compare(model_path: str, frames: list, reference_path: str) -> dict:
    from mace.calculators import MACECalculator

    import macelerate

    reference = MACECalculator(model_paths=reference_path, device="cpu", default_dtype="float64")
    potential = macelerate.load(model_path, dtype="float64")
    d_e, d_f, d_s = [], [], []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = reference
        periodic = bool(atoms.pbc.all())
        ours = potential.predict(atoms, compute_stress=periodic)
        d_e.append(abs(ours.energy[0] - atoms.get_potential_energy()))
        d_f.append(np.abs(ours.forces - atoms.get_forces()).max())
        if periodic:
            d_s.append(np.abs(ours.stress[0] - atoms.get_stress(voigt=False)).max())
    return {
        "n_structures": len(frames),
        "atoms_per_structure": [min(len(a) for a in frames), max(len(a) for a in frames)],
        "max_abs_energy_diff_eV": float(max(d_e)),
        "max_abs_force_diff_eV_per_A": float(max(d_f)),
        "max_abs_stress_diff_eV_per_A3": float(max(d_s)) if d_s else None,
    }


def run_case(index: int, n_structures: int) -> dict:
    """One model against its reference calculator (run in a fresh process by :func:`main`)."""
    data = require_shared_data()
    model, dataset, *maybe_reference = CASES[index]
    reference = maybe_reference[0] if maybe_reference else model
    frames = ase.io.read(data / dataset, f":{n_structures}")
    result = compare(str(data / "models" / model), frames, str(data / "models" / reference))
    return {"data": dataset, "reference": f"MACECalculator({reference})", **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--structures", type=int, default=20)
    parser.add_argument("--case", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.structures)))
        return
    require_shared_data()
    rows = {}
    for index, (model, *_) in enumerate(CASES):
        # one process per model, so that no model's state leaks into another's comparison
        start = time.perf_counter()
        command = [
            sys.executable,
            __file__,
            "--case",
            str(index),
            "--structures",
            str(args.structures),
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows[model] = json.loads(out.stdout.strip().splitlines()[-1])
        print(model, rows[model], f"{time.perf_counter() - start:.0f} s", flush=True)
    write_result("exactness", {**environment(), "dtype": "float64", "results": rows})


if __name__ == "__main__":
    main()
