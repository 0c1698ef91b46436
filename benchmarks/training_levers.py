"""Training levers side by side: sparse (SET/RigL), mixed precision, gradual pruning (issue 15).

Each run is a model file and the JSON report its command wrote (``--json``). For every run: the
lever settings and training cost from the report (steps, seconds per optimisation step, wall
seconds, the final validation force RMSE against the run's own labels), the share of zero
parameters of the written model, energy/force RMSE against DFT on a test set (float64), and the
time per energy+forces step in float32 on one structure with every model interleaved in one
process (so sparse and dense models are timed alike).

    python benchmarks/training_levers.py --runs NAME=MODEL.pt:REPORT.json ... --test test-10.xyz
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.pipeline.timing import interleaved_ms  # noqa: E402


def training_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Lever settings and cost of a run from its JSON report (train, distill or prune)."""
    if "gradual" in report:  # macelerate prune --stages N --json
        stages = report["gradual"]["stages"]
        return {
            "lever": f"gradual pruning, {len(stages)} stages",
            "steps": sum(s["trained_steps"] for s in stages),
            "train_seconds": sum(s["seconds"] for s in stages),
            "seconds_per_step": None,
            "val_forces_rmse": stages[-1]["final_validation"]["val_forces_rmse"],
            "stages": [{k: s[k] for k in ("channels", "parameters", "trained_steps", "seconds")}
                       for s in stages],
        }  # fmt: skip
    if "recovery" in report:  # macelerate prune --finetune (one shot)
        history = report["recovery"]["history"]
        return {
            "lever": "one-shot pruning + recovery",
            "steps": report["recovery"]["steps"],
            "train_seconds": sum(h["seconds"] for h in history),
            "seconds_per_step": None,
            "val_forces_rmse": history[-1]["val_forces_rmse"] if history else None,
        }
    levers = []
    if report.get("sparsity"):
        levers.append(f"{report['sparsity']['method']} {report['sparsity']['target']:.0%}")
    if report.get("mixed_precision"):
        levers.append(f"autocast {report['mixed_precision']['dtype']}")
    return {
        "lever": ", ".join(levers) or "dense float32",
        "steps": report["steps"],
        "train_seconds": report["seconds"],
        "seconds_per_step": report["seconds_per_step"],
        "val_forces_rmse": (report.get("final_validation") or {}).get("val_forces_rmse"),
        "sparsity": report.get("sparsity"),
        "history_val_forces_rmse": [h["val_forces_rmse"] for h in report["history"]],
        "history_seconds": [h["seconds"] for h in report["history"]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, metavar="NAME=MODEL:REPORT")
    parser.add_argument("--test", required=True)
    parser.add_argument("--energy-key", default="QM_energy")
    parser.add_argument("--forces-key", default="QM_forces")
    parser.add_argument("--timing-frame", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="", help="suffix of the result name")
    args = parser.parse_args()
    require_shared_data()
    torch.set_num_threads(args.threads)
    runs = {}
    for spec in args.runs:
        name, _, files = spec.partition("=")
        model, _, report = files.partition(":")
        runs[name] = (model, json.loads(Path(report).read_text()) if report else {})
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    test = read_structures(args.test)
    fast = [load(model, dtype="float32") for model, _ in runs.values()]
    samples = interleaved_ms(fast, test[args.timing_frame], repeats=args.repeats)
    rows: dict[str, dict[str, Any]] = {}
    for (name, (model, report)), times in zip(runs.items(), samples):
        potential = load(model, dtype="float64")
        accuracy = evaluate(potential, test, keys=keys, source=args.test)
        parameters = list(potential.model.parameters())
        rows[name] = {
            "model": model,
            **(training_summary(report) if report else {"lever": "reference"}),
            "parameters": sum(p.numel() for p in parameters),
            "nonzero_parameters": sum(int((p != 0).sum()) for p in parameters),
            "energy_rmse_meV_per_atom": accuracy.energy_rmse,
            "force_rmse_meV_per_A": accuracy.force_rmse,
            "ms_per_step_float32": statistics.median(times),
            "ms_samples_float32": times,
        }
        shown = ("lever", "steps", "train_seconds", "seconds_per_step", "val_forces_rmse",
                 "parameters", "nonzero_parameters", "force_rmse_meV_per_A",
                 "ms_per_step_float32")  # fmt: skip
        print(name, {k: rows[name].get(k) for k in shown}, flush=True)
    payload = {"environment": environment(), "timing_atoms": len(test[args.timing_frame]),
               "test": args.test, "runs": rows}  # fmt: skip
    write_result("training_levers" + args.tag, payload)


if __name__ == "__main__":
    main()
