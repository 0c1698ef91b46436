"""What INT8 readouts cost in accuracy and buy in time, on every real model with its own data.

For each model: ``quantize_readouts`` on a float64 copy, with the error against the exact model
measured on ``--structures`` frames of the model's own data (largest and RMS force difference,
largest energy difference per atom) and the force RMSE of both against the DFT labels; then the
float32 time per energy + forces step of the exact and the int8-readout model on the first
frame, interleaved in one process (median of ``--repeats`` rounds), so the readouts' share of a
step shows as the saving.

    python benchmarks/int8_readouts.py [--structures 10] [--repeats 21] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402
from tabulated_accuracy import MODELS  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.pipeline.timing import interleaved_ms  # noqa: E402
from macelerate.transforms import quantize_readouts  # noqa: E402

ENERGY_KEYS = {"go": "QM_energy", "gst": "energy", "solvent": "energy_xtb"}
FORCE_KEYS = {"go": "QM_forces", "gst": "forces", "solvent": "forces_xtb"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--structures", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    data = require_shared_data()
    torch.set_num_threads(args.threads)
    results = {}
    for name in args.models:
        model_file, data_file = MODELS[name]
        frames = read_structures(data / data_file, index=f":{args.structures}")
        keys = LabelKeys(energy=ENERGY_KEYS[name], forces=FORCE_KEYS[name])
        exact = load(data / model_file, dtype="float64")
        quantized, report = quantize_readouts(exact, probe=frames)
        accuracy = {
            label: evaluate(potential, frames, keys=keys, source=data_file)
            for label, potential in (("exact", exact), ("int8", quantized))
        }
        fast = [
            load(data / model_file, dtype="float32", readouts=mode) for mode in ("exact", "int8")
        ]
        samples = interleaved_ms(fast, frames[0], repeats=args.repeats)
        ms = [statistics.median(s) for s in samples]
        results[name] = {
            "model": model_file,
            "report": asdict(report),
            "force_rmse_vs_labels_meV_per_A": {k: a.force_rmse for k, a in accuracy.items()},
            "energy_rmse_vs_labels_meV_per_atom": {k: a.energy_rmse for k, a in accuracy.items()},
            "timing_atoms": len(frames[0]),
            "ms_per_step_float32": {"exact": ms[0], "int8": ms[1]},
            "ms_samples_float32": {"exact": samples[0], "int8": samples[1]},
            "speedup": ms[0] / ms[1],
        }
        print(name, {k: v for k, v in results[name].items() if k != "ms_samples_float32"},
              flush=True)  # fmt: skip
    write_result("int8_readouts", {"environment": environment(), "threads": args.threads,
                                   "models": results})  # fmt: skip


if __name__ == "__main__":
    main()
