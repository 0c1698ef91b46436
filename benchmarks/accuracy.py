"""Accuracy of the shared real models on their shared real test sets (``macelerate eval``).

Writes one eval JSON per model under results/eval/ and a summary JSON that puts each number next
to the one the model's upstream training log reports (from ../shared/data/README.md).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, SHARED, environment, require_shared_data, write_result  # noqa: E402

SOLVENT_KEYS = ["--energy-key", "energy_xtb", "--forces-key", "forces_xtb"]
GO_KEYS = ["--energy-key", "QM_energy", "--forces-key", "QM_forces"]
CASES = [
    # (model, data, keys, upstream RMSE E meV/atom, F meV/Å, where upstream measured it)
    ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz", GO_KEYS,
     5.0, 264.0, "upstream log, validation split of its 10% training set (not test-10)"),
    ("go_mace_tutorial/GO_full_MACE_swa.model", "go_mace_tutorial/test-10.xyz", GO_KEYS,
     3.9, 197.0, "upstream log, validation split of the full training set (not test-10)"),
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz",
     ["--stress-key", "stress"], None, None, "no published error"),
    ("mace_solvent_xtb_tutorial/mace01_swa.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz",
     SOLVENT_KEYS, 20.4, 211.4, "upstream log, same 1000-frame test set"),
    ("mace_solvent_xtb_tutorial/mace01.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz",
     SOLVENT_KEYS, 291.2, 268.8, "upstream log, same 1000-frame test set"),
    ("mace_solvent_xtb_tutorial/mace02_com1_swa.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz",
     SOLVENT_KEYS, 70.9, 582.3, "upstream log, same 1000-frame test set"),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    require_shared_data()
    out_dir = RESULTS / "eval"
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for model, data, keys, up_e, up_f, note in CASES:
        label = Path(model).stem
        out = out_dir / f"{label}_{args.dtype}_cpu_{datetime.date.today().isoformat()}.json"
        command = ["macelerate", "eval", str(SHARED / "models" / model),
                   "--data", str(SHARED / data), "--dtype", args.dtype, "--label", label,
                   "--json", str(out), *keys]  # fmt: skip
        subprocess.run(command, check=True)
        report = json.loads(out.read_text())
        rows.append({
            "model": model, "data": data, "n_structures": report["n_structures"],
            "energy_rmse_meV_per_atom": report["energy_rmse"],
            "force_rmse_meV_per_A": report["force_rmse"],
            "energy_mae_meV_per_atom": report["energy_mae"],
            "force_mae_meV_per_A": report["force_mae"],
            "stress_rmse_meV_per_A3": report["stress_rmse"],
            "upstream_energy_rmse": up_e, "upstream_force_rmse": up_f, "upstream_note": note,
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    write_result("accuracy", {**environment(), "dtype": args.dtype, "results": rows})


if __name__ == "__main__":
    main()
