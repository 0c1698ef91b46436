"""NVE energy conservation of a hard-capped student and its smooth-capped twin (same weights).

python benchmarks/students_nve_caps.py STUDENT.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402
from students import smooth_twin  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.checks.nve import check_nve  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.models.student import load_student  # noqa: E402


def main() -> None:
    require_shared_data()
    atoms = read_structures(SHARED / "go_mace_tutorial/test-10.xyz")[0]
    student = load_student(sys.argv[1]).double()
    k = student.config.max_neighbors
    rows = {}
    for name, model in ((f"hard_cap_{k}", student), (f"smooth_cap_{k}", smooth_twin(student))):
        for steps in (100, 400):
            result = check_nve(load(model, dtype="float64"), atoms, steps=steps, timestep_fs=0.5)
            rows[f"{name}_{steps}_steps"] = {
                "drift_meV_per_atom_ps": result.drift_mev_per_atom_ps,
                "fluctuation_meV_per_atom": result.fluctuation_mev_per_atom,
            }
            print(name, steps, rows[f"{name}_{steps}_steps"], flush=True)
    payload = {"environment": environment(), "student": sys.argv[1],
               "structure": "GO test-10 frame 0", "timestep_fs": 0.5, "temperature_k": 300.0,
               "rows": rows}  # fmt: skip
    write_result("students_nve_caps", payload)


if __name__ == "__main__":
    main()
