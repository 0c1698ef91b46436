"""Physical checks of real models (``macelerate check``): symmetry, equigrad, gradients, NVE drift.

GO-MACE on the first graphene-oxide frame of test-10 and the GST model on its first 81-atom cell,
in float64 and float32. Writes one check JSON per run under results/check/.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, SHARED, require_shared_data  # noqa: E402

CASES = [
    ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz"),
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--nve-steps", type=int, default=100)
    args = parser.parse_args()
    require_shared_data()
    out_dir = RESULTS / "check"
    out_dir.mkdir(parents=True, exist_ok=True)
    for model, structure in CASES:
        for dtype in args.dtypes.split(","):
            out = (
                out_dir / f"{Path(model).stem}_{dtype}_cpu_{datetime.date.today().isoformat()}.json"
            )
            command = ["macelerate", "check", str(SHARED / "models" / model),
                       "--structure", str(SHARED / structure), "--dtype", dtype,
                       "--nve-steps", str(args.nve_steps), "--nve-timestep", "0.5",
                       "--json", str(out)]  # fmt: skip
            print(" ".join(command), flush=True)
            subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
