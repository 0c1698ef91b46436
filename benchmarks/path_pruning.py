"""Convolution-path pruning without retraining: what each removal costs in forces and buys in time.

Scores every live convolution path of ``--model`` by ablation on ``--structures`` frames of
``--data`` (RMS force change when that path alone is removed), then removes paths cumulatively in
the order ``prune --remove-paths`` uses (smallest change per message component first). For each
step of the ladder: the paths removed, the RMS and largest force change against the full model on
the same frames, and the float32 time per energy + forces step on the first frame, all variants
interleaved in one process (median of ``--repeats`` rounds).

    python benchmarks/path_pruning.py --model GO_10pct_MACE_swa.model --data test-10.xyz \\
        [--structures 4] [--repeats 9] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.compress import plain_mace_model  # noqa: E402
from macelerate.compress.paths import (  # noqa: E402
    least_important_paths,
    path_ablation_scores,
    remove_conv_paths,
)
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.pipeline.timing import interleaved_ms  # noqa: E402


def _forces(model, frames) -> np.ndarray:
    potential = load(model, dtype="float64")
    return np.concatenate([potential.predict(atoms).forces for atoms in frames])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--structures", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frames = read_structures(args.data, index=f":{args.structures}")
    model = plain_mace_model(load(args.model, dtype="float64"))
    scores = path_ablation_scores(model, frames)
    order = least_important_paths(scores, len(scores) - 1)  # one path must stay
    ladder = [(0, model)] + [
        (count, remove_conv_paths(model, order[:count])) for count in range(1, len(order) + 1)
    ]
    full = _forces(model, frames)
    rows = []
    for count, variant in ladder:
        change = _forces(variant, frames) - full
        rows.append({
            "removed": [p.label for p in order[:count]],
            "force_rms_change_meV_per_A": 1e3 * float(np.sqrt(np.mean(change**2))),
            "force_max_change_meV_per_A": 1e3 * float(np.abs(change).max()),
        })  # fmt: skip
    potentials = [load(variant, dtype="float32") for _, variant in ladder]
    samples = interleaved_ms(potentials, frames[0], repeats=args.repeats)
    for row, sample in zip(rows, samples):
        row["ms_per_step_float32"] = statistics.median(sample)
        row["ms_samples_float32"] = sample
        row["speedup"] = statistics.median(samples[0]) / row["ms_per_step_float32"]
        print({k: v for k, v in row.items() if k != "ms_samples_float32"}, flush=True)
    write_result("path_pruning", {
        "environment": environment(), "model": args.model, "data": args.data,
        "timing_atoms": len(frames[0]), "threads": args.threads,
        "scores_meV_per_A": {p.label: 1e3 * s for p, s in scores.items()},
        "widths": {p.label: p.width for p in scores}, "ladder": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
