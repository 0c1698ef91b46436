"""Low-rank species embeddings on real MACE checkpoints: how much element structure each rank keeps.

For ``--model``, stacks every element-dependent weight (node embedding, element-dependent skip
connections, symmetric-contraction weights) into W [n_elements, K] and, for every rank r below the
number of elements, projects W onto its best rank-r approximation
(:func:`macelerate.compress.species_rank.low_rank_species`). Reports the singular values of W, the
relative Frobenius change, the parameters of the factored form, the RMS force change against the
full model, and the energy and force RMSE against the reference labels on ``--structures`` frames
of ``--data``. With ``--finetune DATA --steps S``, each projected model is also trained S steps on
DATA's labels with its rank kept (``TrainConfig.species_rank``), and evaluated again.

    python benchmarks/species_rank.py --model mace01_swa.model --data solvent_xtb_test.xyz \\
        --energy-key energy_xtb --forces-key forces_xtb [--structures 20] \\
        [--finetune solvent_xtb_train_200.xyz --steps 200] [--tag _solvent]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.compress import plain_mace_model  # noqa: E402
from macelerate.compress.species_rank import low_rank_species  # noqa: E402
from macelerate.data.labels import LabelKeys, read_structures  # noqa: E402
from macelerate.evaluate import evaluate  # noqa: E402
from macelerate.train.loop import TrainConfig, train  # noqa: E402


def _accuracy(model, frames, keys) -> dict[str, float]:
    report = evaluate(load(model, dtype="float64"), frames, keys=keys, source="test")
    return {
        "energy_rmse_meV_per_atom": report.energy_rmse,
        "force_rmse_meV_per_A": report.force_rmse,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--energy-key", default="energy")
    parser.add_argument("--forces-key", default="forces")
    parser.add_argument("--structures", type=int, default=8)
    parser.add_argument("--finetune", default=None)
    parser.add_argument("--steps", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keys = LabelKeys(energy=args.energy_key, forces=args.forces_key)
    frames = read_structures(args.data, index=f":{args.structures}")
    model = plain_mace_model(load(args.model, dtype="float64"))
    n_elements = len(model.atomic_numbers)
    train_frames = read_structures(args.finetune) if args.finetune else []
    rows = [{"rank": n_elements, **_accuracy(model, frames, keys)}]
    print(rows[0], flush=True)
    for rank in range(n_elements - 1, 0, -1):
        projected, report = low_rank_species(model, rank, structures=frames)
        row = {
            "rank": rank,
            "relative_change": report.relative_change,
            "parameters": report.parameters,
            "factored_parameters": report.factored_parameters,
            "force_rms_change_meV_per_A": 1e3 * report.rms_force_change,
            **_accuracy(projected, frames, keys),
        }
        if train_frames and args.steps:
            config = TrainConfig(
                epochs=1_000_000, max_steps=args.steps, batch_size=4, lr=1e-3, progress=False,
                species_rank=rank, schedule="constant", val_fraction=0.0,
            )  # fmt: skip
            start = time.perf_counter()
            trained, _ = train(projected, train_frames, config=config, keys=keys)
            row["finetune_seconds"] = time.perf_counter() - start
            row["finetuned"] = _accuracy(trained, frames, keys)
        rows.append(row)
        print(row, flush=True)
    if train_frames and args.steps:  # the full-rank model trained alike: the fair comparison
        config = TrainConfig(epochs=1_000_000, max_steps=args.steps, batch_size=4, lr=1e-3,
                             progress=False, schedule="constant", val_fraction=0.0)  # fmt: skip
        trained, _ = train(model, train_frames, config=config, keys=keys)
        rows[0]["finetuned"] = _accuracy(trained, frames, keys)
        print(rows[0], flush=True)
    write_result(f"species_rank{args.tag}", {
        "environment": environment(), "model": args.model, "data": args.data,
        "structures": len(frames), "elements": [int(z) for z in model.atomic_numbers],
        "singular_values": report.singular_values, "finetune": args.finetune,
        "steps": args.steps, "rows": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
