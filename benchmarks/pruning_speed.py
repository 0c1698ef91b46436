"""Time per step of GO-MACE and its pruned architectures in one process (issue 6).

The architecture, not the kept channels, sets the cost, so each variant is pruned with magnitude
importance (seconds, no data). Rounds are interleaved over the models so that load changes hit all
of them alike; the figure is the median per model. Energy + forces, one 168-atom test-10 frame.

    python benchmarks/pruning_speed.py [--dtype float32] [--rounds 7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402
from students import interleaved_ms  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.compress import estimate_macs, prune  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.models.loading import read_model_file  # noqa: E402

VARIANTS = {"64ch": (64, None), "32ch": (32, None), "ell2": (128, 2), "ell1": (128, 1),
            "64ch+ell2": (64, 2), "32ch+ell1": (32, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    require_shared_data()
    path = SHARED / "models/go_mace_tutorial/GO_10pct_MACE_swa.model"
    original, _ = read_model_file(path)
    atoms = read_structures(SHARED / "go_mace_tutorial/test-10.xyz")[0]
    models = {"original": original}
    for name, (channels, max_ell) in VARIANTS.items():
        models[name], _ = prune(original, channels=channels, max_ell=max_ell,
                                importance="magnitude")  # fmt: skip
    potentials = {name: load(model, dtype=args.dtype) for name, model in models.items()}
    ms = interleaved_ms(potentials, atoms, rounds=args.rounds)
    rows = {}
    for name, model in models.items():
        per_edge, per_atom = estimate_macs(model)
        rows[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "macs_per_edge": per_edge, "macs_per_atom": per_atom,
            "ms_per_step": ms[name], "speedup": ms["original"] / ms[name],
        }  # fmt: skip
        print(name, rows[name], flush=True)
    payload = {"environment": environment(), "dtype": args.dtype, "n_atoms": len(atoms),
               "threads": torch.get_num_threads(), "models": rows}  # fmt: skip
    write_result(f"pruning_speed_{args.dtype}", payload)


if __name__ == "__main__":
    main()
