"""GO-shaped students with random weights, for timing exports and runtimes only.

The architectures of the README's GO students (``macelerate distill ... --max-L 0 --channels 32
--correlation 3 --max-ell 2 --r-max 5.0 --max-neighbors 12 --smooth-cap``): ``mace32`` (with a
confidence head), ``edge32`` (edge force head with virial stress), ``hyb32`` (mace, attention
layers) and ``plain32`` (no cap). A step's cost depends on the architecture, the structure and
the cap, not on trained weights; accuracy numbers need the trained students.

    python benchmarks/make_timing_students.py --out DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from macelerate.models.student import build_student, save_student

BASE = {
    "atomic_numbers": [1, 6, 8], "atomic_energies": [-13.6, -1029.0, -2042.0], "channels": 32,
    "max_L": 0, "max_ell": 2, "correlation": 3, "r_max": 5.0, "max_neighbors": 12,
    "smooth_cap": True, "dtype": "float32",
}  # fmt: skip
VARIANTS = {
    "mace32": {"confidence_head": True},
    "edge32": {"direct_forces": True, "direct_stress": True, "force_head_kind": "edge"},
    "hyb32": {"confidence_head": True, "layers": ["mace", "attention"]},
    "plain32": {"max_neighbors": None, "smooth_cap": False},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for NAME.pt files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for seed, (name, extra) in enumerate(VARIANTS.items()):
        torch.manual_seed(seed)
        student = build_student({**BASE, **extra})
        save_student(args.out / f"{name}.pt", student, {"note": "random weights, timing only"})
        print(name, sum(p.numel() for p in student.parameters()), "parameters")


if __name__ == "__main__":
    main()
