"""Seconds per training step: float32 against mixed precision (autocast), in one process.

Short training runs of the same model on the same labelled structures, alternating float32 and
each autocast dtype for several rounds (so load drifts hit all alike); the median seconds per
optimisation step of each. The accuracy side (time to the float32 model's validation error)
comes from full runs (``macelerate distill ... --autocast bfloat16 --json``).

    python benchmarks/mixed_precision_speed.py --model student.pt --data labelled.xyz \\
        --threads 1 2 --autocast bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.train import TrainConfig, train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--structures", type=int, default=40)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--autocast", nargs="+", default=["bfloat16"])
    args = parser.parse_args()
    require_shared_data()
    model = load(args.model, dtype="float32", fuse_message_passing=False).model  # train fuses
    data = read_structures(args.data)[: args.structures]
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    rows = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        samples: dict[str, list[float]] = {mode: [] for mode in ["float32", *args.autocast]}
        for round_ in range(args.rounds + 1):  # round 0: warm-up, not kept
            for mode in samples:
                config = TrainConfig(
                    epochs=1, max_steps=args.steps if round_ else 2, batch_size=args.batch_size,
                    lr=1e-3, dtype="float32", autocast=None if mode == "float32" else mode,
                    val_fraction=0.0, progress=False,
                )  # fmt: skip
                _, report = train(model, data, config=config, keys=keys)
                if round_:
                    samples[mode].append(report.seconds_per_step)
        rows[str(threads)] = {
            mode: {"median_s_per_step": statistics.median(s), "samples": s}
            for mode, s in samples.items()
        }
        print(threads, {m: round(v["median_s_per_step"], 4) for m, v in rows[str(threads)].items()},
              flush=True)  # fmt: skip
    payload = {"environment": environment(), "model": args.model, "data": args.data,
               "settings": vars(args), "threads": rows}  # fmt: skip
    write_result("mixed_precision_speed", payload)


if __name__ == "__main__":
    main()
