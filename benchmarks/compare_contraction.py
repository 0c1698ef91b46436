"""The symmetric contraction of this checkout against another commit's, in one process.

Loads ``macelerate/runtime/symmetric_contraction.py`` of a baseline checkout (``--baseline DIR``,
e.g. ``git worktree add /tmp/base 2aea622``) as a separate module, builds both implementations over
the same mace-torch weights of a model's products, checks that they agree, and times forward +
backward (the gradient forces need) on the real element mix of a structure (default: GO test-10
frame 0; ``--structure FILE`` for other elements), variants alternated over rounds (min and
median of the per-round minima).

    python benchmarks/compare_contraction.py MODEL --baseline /tmp/base [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import SHARED, environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402


def _baseline_module(checkout: Path):
    path = checkout / "macelerate/runtime/symmetric_contraction.py"
    spec = importlib.util.spec_from_file_location("baseline_symmetric_contraction", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _rebuilt(fast: torch.nn.Module, module) -> torch.nn.Module:
    """The baseline implementation over the same mace-torch tensors as ``fast``."""
    old = module.FastSymmetricContraction.__new__(module.FastSymmetricContraction)
    torch.nn.Module.__init__(old)
    old.irreps_in, old.irreps_out = fast.irreps_in, fast.irreps_out
    contractions = []
    for contraction in fast.contractions:
        source = torch.nn.Module()
        source.correlation, source.num_features = contraction.correlation, contraction.num_features
        source.weights_max, source.weights = contraction.weights_max, contraction.weights
        for name, buffer in contraction.named_buffers(recurse=False):
            if name.startswith("U_matrix"):
                source.register_buffer(name, buffer)
        contractions.append(
            module.FastContraction(source, live_components=contraction.live.tolist())
        )
    old.contractions = torch.nn.ModuleList(contractions)
    old.register_buffer("live", fast.live.clone(), persistent=False)
    return old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--baseline", required=True, type=Path, help="checkout to compare with")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tag", default="")
    parser.add_argument("--structure", type=Path, default=None, help="first frame sets elements")
    args = parser.parse_args()
    require_shared_data()
    torch.set_num_threads(args.threads)
    atoms = read_structures(args.structure or SHARED / "go_mace_tutorial/test-10.xyz")[0]
    potential = load(args.model, dtype="float32")
    node_attrs = potential.build_graph(atoms)["node_attrs"].float()
    baseline = _baseline_module(args.baseline)
    fast_modules = [m for m in potential.model.modules()
                    if type(m).__name__ == "FastSymmetricContraction"]  # fmt: skip
    rows = []
    for index, fast in enumerate(fast_modules):
        first = fast.contractions[0]
        generator = torch.Generator().manual_seed(index)
        shape = (node_attrs.shape[0], first.num_features, first.n_components)
        x = torch.randn(shape, generator=generator, requires_grad=True)
        variants = {"baseline": _rebuilt(fast, baseline), "this checkout": fast}
        outputs = {}
        for name, module in variants.items():
            y = module(x, node_attrs)
            outputs[name] = (y.detach(), torch.autograd.grad(y.sum(), x)[0])
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, module in variants.items():
                samples = []
                for _ in range(10):
                    start = time.perf_counter()
                    torch.autograd.grad(module(x, node_attrs).sum(), x)
                    samples.append(time.perf_counter() - start)
                times[name].append(1e3 * min(samples))
        row = {
            "product": index,
            "live_components": int(fast.live.numel()),
            "max_abs_output_diff": float(
                (outputs["baseline"][0] - outputs["this checkout"][0]).abs().max()
            ),  # fmt: skip
            "max_abs_gradient_diff": float(
                (outputs["baseline"][1] - outputs["this checkout"][1]).abs().max()
            ),  # fmt: skip
            **{f"ms {name} min": min(v) for name, v in times.items()},
            **{f"ms {name} median": statistics.median(v) for name, v in times.items()},
        }
        rows.append(row)
        print(row, flush=True)
    write_result(f"compare_contraction{args.tag}", {
        "environment": environment(), "model": str(args.model), "baseline": str(args.baseline),
        "structure": str(args.structure or "go_mace_tutorial/test-10.xyz frame 0"),
        "n_atoms": len(atoms), "threads": args.threads, "rows": rows,
    })  # fmt: skip


if __name__ == "__main__":
    main()
