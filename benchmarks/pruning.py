"""Structural pruning on real data (issue 6): prune, recover, compare with training from scratch.

``--dataset go``: GO-MACE (GO_10pct, 128x0e, max_ell 3, correlation 3) pruned to 64 and 32 channels
and to max_ell 2 and 1; parameters, multiply-adds, time per step in this process, energy/force
RMSE on GO test-10 before and after recovery fine-tuning on GO train-10; the same architecture
trained from scratch with the same number of optimisation steps; the random-importance control.

``--dataset acac``: first trains a larger MACE (L=2 hidden features) on acetylacetone
(train_300K), then prunes channels and the hidden L=2 order and compares in the same way on
test_MD_300K.

    python benchmarks/pruning.py --dataset go --steps 100 [--variants 64:3 32:3 128:2 128:1]

``--plateau-minutes M``: the scratch model is also trained to convergence (plateau learning-rate
schedule, stopped when the validation loss stalls or after M minutes), with every fifth training
structure held out for validation (the acac original and the pruned model's recovery train on
the other 80 % too); the row records the steps and seconds scratch needed to reach the recovered
pruned model's validation force RMSE, and the test accuracy at the plateau.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.compress import plain_mace_model, prune  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.mace.config import build_mace_model, describe_mace_model  # noqa: E402
from macelerate.testing import tiny_mace_config  # noqa: E402
from macelerate.train import LossWeights, TrainConfig, train  # noqa: E402

GO_KEYS = LabelKeys(energy="QM_energy", forces="QM_forces")
ACAC_KEYS = LabelKeys(energy="energy", forces="forces")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_ms(model: torch.nn.Module, atoms, *, dtype: str) -> float:
    potential = load(model, dtype=dtype)
    graph = potential.build_graph(atoms)
    potential.forward(graph)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        potential.forward(potential.build_graph(atoms))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def accuracy(model, structures, keys) -> dict:
    report = evaluate(load(model, dtype="float64"), structures, keys=keys, source="test")
    return {
        "energy_rmse_meV_per_atom": report.energy_rmse,
        "force_rmse_meV_per_A": report.force_rmse,
    }


def fit(model, structures, keys, *, steps: int, lr: float, batch_size: int, seed: int, name: str):
    config = TrainConfig(
        epochs=max(1, -(-steps * batch_size // len(structures))), batch_size=batch_size, lr=lr,
        max_steps=steps, dtype="float32", seed=seed, val_fraction=0.0, progress=False,
        loss=LossWeights(energy=1.0, forces=10.0, huber_delta=0.01), ema_decay=0.99,
        checkpoint_path=f"/tmp/pruning_{name}.state",
    )  # fmt: skip
    Path(config.checkpoint_path).unlink(missing_ok=True)  # a fresh run each time
    start = time.perf_counter()
    trained, report = train(model, structures, config=config, keys=keys)
    return trained, time.perf_counter() - start


def fit_to_plateau(model, structures, validation, keys, *, args, name: str):
    """Train until the validation loss stalls (plateau schedule) or ``args.plateau_minutes``."""
    config = TrainConfig(
        epochs=100_000, batch_size=args.batch_size, lr=args.lr, dtype="float32", seed=args.seed,
        schedule="plateau", plateau_patience=args.plateau_patience,
        early_stop_patience=3 * args.plateau_patience, max_seconds=60.0 * args.plateau_minutes,
        progress=False, loss=LossWeights(energy=1.0, forces=10.0, huber_delta=0.01),
        ema_decay=0.99, checkpoint_path=f"/tmp/pruning_{name}.state",
    )  # fmt: skip
    Path(config.checkpoint_path).unlink(missing_ok=True)
    return train(model, structures, config=config, val_structures=validation, keys=keys)


def steps_to_reach(history: list[dict], target: float) -> dict:
    """First epoch end whose validation force RMSE (meV/Å) is at or below ``target``."""
    seconds = 0.0
    for record in history:
        seconds += record["seconds"]
        if record["val_forces_rmse"] is not None and record["val_forces_rmse"] <= target:
            return {"steps": record["step"], "training_seconds": seconds}
    return {"steps": None, "training_seconds": None}


def validation_force_rmse(model, structures, keys) -> float:
    return accuracy(model, structures, keys)["force_rmse_meV_per_A"]


def scratch_model(pruned: torch.nn.Module, *, seed: int) -> torch.nn.Module:
    """The pruned architecture with fresh random weights (same E0s, scale and shift)."""
    torch.manual_seed(seed)
    return build_mace_model(describe_mace_model(pruned))


def run_variant(original, channels, max_ell, max_L, data, *, args) -> dict:
    train_set, test_set, keys, calibration, timing_atoms, validation = data
    row: dict = {"channels": channels, "max_ell": max_ell, "max_L": max_L}
    for importance in ["taylor", *(["random"] if args.controls else [])]:
        pruned, report = prune(
            original, channels=channels, max_ell=max_ell, max_L=max_L, importance=importance,
            calibration=calibration, label_keys=keys, seed=args.seed,
        )  # fmt: skip
        tag = importance
        row[f"{tag}_prune_report"] = report.to_dict()
        row[f"{tag}_before_recovery"] = accuracy(pruned, test_set, keys)
        recovered, seconds = fit(pruned, train_set, keys, steps=args.steps, lr=args.lr,
                                 batch_size=args.batch_size, seed=args.seed,
                                 name=f"{args.dataset}_{channels}_{max_ell}_{tag}")  # fmt: skip
        row[f"{tag}_after_recovery"] = accuracy(recovered, test_set, keys)
        row[f"{tag}_recovery_seconds"] = seconds
        print(channels, max_ell, max_L, tag, row[f"{tag}_before_recovery"],
              row[f"{tag}_after_recovery"], flush=True)  # fmt: skip
        if importance == "taylor":
            row["parameters"] = count_parameters(pruned)
            row["ms_per_step_float32"] = step_ms(pruned, timing_atoms, dtype="float32")
    if validation is not None:
        target = validation_force_rmse(recovered, validation, keys)
        fresh = scratch_model(pruned, seed=args.seed + 1)
        name = f"{args.dataset}_{channels}_{max_ell}_plateau"
        trained, report = fit_to_plateau(fresh, train_set, validation, keys, args=args, name=name)
        row["plateau"] = {
            "pruned_validation_force_rmse_meV_per_A": target,
            "reached_pruned": steps_to_reach(report.history, target),
            "steps": report.steps,
            "training_seconds": sum(r["seconds"] for r in report.history),
            "stop_reason": report.stop_reason,
            "test": accuracy(trained, test_set, keys),
            "history": [
                {k: r[k] for k in ("step", "lr", "val_forces_rmse", "val_energy_rmse", "seconds")}
                for r in report.history
            ],
        }
        print(channels, max_ell, max_L, "scratch to plateau", row["plateau"]["test"],
              row["plateau"]["reached_pruned"], report.stop_reason, flush=True)  # fmt: skip
    if args.scratch:
        for multiple in args.scratch_multiples:  # the fair test: scratch with B, 4B, ... steps
            fresh = scratch_model(pruned, seed=args.seed + 1)
            trained, seconds = fit(
                fresh,
                train_set,
                keys,
                steps=multiple * args.steps,
                lr=args.lr,
                batch_size=args.batch_size,
                seed=args.seed,
                name=f"{args.dataset}_{channels}_{max_ell}_scratch{multiple}",
            )
            suffix = "" if multiple == 1 else f"_x{multiple}"
            row[f"scratch{suffix}_after_training"] = accuracy(trained, test_set, keys)
            row[f"scratch{suffix}_seconds"] = seconds
            print(
                channels,
                max_ell,
                max_L,
                f"scratch x{multiple}",
                row[f"scratch{suffix}_after_training"],
                f"{seconds:.0f} s",
                flush=True,
            )
    return row


def split_validation(structures: list, args) -> tuple[list, list | None]:
    """(training, validation): every fifth structure held out when a plateau run is asked for."""
    if not args.plateau_minutes:
        return structures, None
    return [a for i, a in enumerate(structures) if i % 5], structures[::5]


def go_data(args):
    train_set, validation = split_validation(
        read_structures(SHARED / "go_mace_tutorial/train-10.xyz"), args
    )
    test_set = read_structures(SHARED / "go_mace_tutorial/test-10.xyz")[: args.test]
    original = load(SHARED / "models/go_mace_tutorial/GO_10pct_MACE_swa.model", dtype="float32")
    return original, (train_set, test_set, GO_KEYS, train_set[:4], test_set[0], validation)


def acac_data(args):
    train_set, validation = split_validation(read_structures(SHARED / "acac/train_300K.xyz"), args)
    test_set = read_structures(SHARED / "acac/test_MD_300K.xyz")[: args.test]
    isolated = {a.numbers[0]: a.get_potential_energy() for a in
                read_structures(SHARED / "acac/isolated_atoms.xyz")}  # fmt: skip
    config = tiny_mace_config([1, 6, 8], channels=args.acac_channels, max_L=2, max_ell=3,
                              correlation=3, r_max=5.0, dtype="float32")  # fmt: skip
    config.update(atomic_energies=[isolated[z] for z in (1, 6, 8)], avg_num_neighbors=13.0,
                  radial_MLP=[64, 64, 64], MLP_irreps="16x0e")  # fmt: skip
    torch.manual_seed(args.seed)
    big = build_mace_model(config)
    trained, seconds = fit(big, train_set, ACAC_KEYS, steps=args.acac_teacher_steps, lr=args.lr,
                           batch_size=args.batch_size, seed=args.seed, name="acac_big")  # fmt: skip
    print("acac large model", accuracy(trained, test_set, ACAC_KEYS), f"{seconds:.0f} s")
    data = (train_set, test_set, ACAC_KEYS, train_set[:16], test_set[0], validation)
    return copy.deepcopy(trained), data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", choices=["go", "acac"], default="go")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="CHANNELS:MAX_ELL[:MAX_L] (default per dataset)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=100, help="optimisation steps per training")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--test", type=int, default=40, help="test structures")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-scratch", dest="scratch", action="store_false")
    parser.add_argument(
        "--scratch-multiples",
        type=int,
        nargs="+",
        default=[1],
        help="train the scratch model with these multiples of --steps (1 4 16)",
    )
    parser.add_argument(
        "--plateau-minutes",
        type=float,
        default=0.0,
        help="also train scratch to a validation plateau, at most this long",
    )
    parser.add_argument(
        "--plateau-patience",
        type=int,
        default=3,
        help="epochs without validation gain before the lr halves (stop: 3x)",
    )
    parser.add_argument("--no-controls", dest="controls", action="store_false")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    parser.add_argument("--acac-channels", type=int, default=32)
    parser.add_argument("--acac-teacher-steps", type=int, default=1000)
    args = parser.parse_args()
    require_shared_data()
    torch.set_num_threads(args.threads)
    original, data = go_data(args) if args.dataset == "go" else acac_data(args)
    defaults = {"go": ["64:3", "32:3", "128:2", "128:1"], "acac": ["16:3:2", "16:3:1", "32:2:2"]}
    base = {
        "parameters": count_parameters(plain_mace_model(original)),  # the file's, not the runtime's
        "test": accuracy(original, data[1], data[2]),
        "ms_per_step_float32": step_ms(original, data[4], dtype="float32"),
        "timing_atoms": len(data[4]),
    }
    print("original", base, flush=True)
    rows = []
    for variant in args.variants or defaults[args.dataset]:
        parts = [int(x) for x in variant.split(":")]
        channels, max_ell, max_L = (parts + [None])[:3]
        rows.append(run_variant(original, channels, max_ell, max_L, data, args=args))
        payload = {"environment": environment(), "settings": vars(args), "original": base,
                   "variants": rows}  # fmt: skip
        write_result(f"pruning_{args.dataset}{args.tag}", payload)  # after every variant


if __name__ == "__main__":
    main()
