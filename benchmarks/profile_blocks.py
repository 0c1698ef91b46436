"""Where a step's time goes: each block of GO-MACE timed alone, mace-torch's module against ours.

The inputs each block sees in a real step (GO test-10 frame 0, 168 atoms, 7,818 edges) are captured
once; every block is then timed forward + backward (the gradients forces need: with respect to the
block's inputs, weights frozen), median of ``--repeats`` after warm-up, alternating the variants so
that machine drift hits them alike. Per interaction:

* radial MLP: mace-torch's e3nn MLP on [n_edges] rows, and the cubic table (tabulated lever);
* convolution: mace-torch's e3nn tensor product + ``scatter_sum``, and macelerate's fused one;
* symmetric contraction: mace-torch's, and the sparse-polynomial one (weights frozen, as in
  inference: its gradient form).

    python benchmarks/profile_blocks.py [--dtype float32] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate import load  # noqa: E402
from macelerate.data.labels import read_structures  # noqa: E402
from macelerate.runtime.accelerate import RuntimeOptions  # noqa: E402
from macelerate.runtime.symmetric_contraction import FastSymmetricContraction  # noqa: E402
from macelerate.runtime.tabulated_radial import EdgeFeatures, TabulatedRadialMLP  # noqa: E402


def capture(model: torch.nn.Module, graph: dict) -> dict[str, tuple]:
    """Inputs of every interaction's radial MLP, convolution and product, from one step."""
    seen: dict[str, tuple] = {}
    hooks = []

    def keep(key: str) -> Callable:
        def hook(module: torch.nn.Module, args: tuple, out: object) -> None:
            seen[key] = args

        return hook

    for k, (block, product) in enumerate(zip(model.interactions, model.products)):
        for name, module in (("radial", block.conv_tp_weights), ("conv", block.conv_tp),
                             ("contraction", product.symmetric_contractions)):  # fmt: skip
            hooks.append(module.register_forward_hook(keep(f"{name}{k}")))
    model(graph, training=False, compute_force=True)
    for hook in hooks:
        hook.remove()
    return seen


def timed(function: Callable[..., torch.Tensor], args: tuple, grad_of: list[int]) -> Callable:
    """A step: forward, then the gradient with respect to ``args[i]`` for ``i`` in ``grad_of``."""
    inputs = [a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args]
    for i in grad_of:
        inputs[i].requires_grad_(True)

    def step() -> None:
        out = function(*inputs)
        torch.autograd.grad(out.sum(), [inputs[i] for i in grad_of])

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = require_shared_data()
    atoms = read_structures(data / "go_mace_tutorial/test-10.xyz", index="0")[0]
    model_path = data / "models/go_mace_tutorial/GO_10pct_MACE_swa.model"
    # fused convolution only: its conv_tp receives per-atom features (mace-torch's own path
    # gathers them per edge first); radial MLPs and contractions are still mace-torch's
    conv_only = RuntimeOptions(fast_products=False, skip_dead_blocks=False, slot_layout=False)
    plain = load(model_path, dtype=args.dtype, fuse_message_passing=conv_only)
    unfused = load(model_path, dtype=args.dtype, fuse_message_passing=False)
    model = plain.model
    graph = plain.build_graph(atoms)
    data_graph = {k: v for k, v in graph.items()}
    inputs = capture(model, data_graph)
    features = EdgeFeatures(model.radial_embedding)
    steps: dict[str, Callable] = {}
    for k, block in enumerate(model.interactions):
        radial_in = inputs[f"radial{k}"]
        lengths = torch.linalg.vector_norm(
            data_graph["positions"][data_graph["edge_index"][0]]
            - data_graph["positions"][data_graph["edge_index"][1]] - data_graph["shifts"], dim=1
        ).unsqueeze(-1).to(radial_in[0].dtype)  # fmt: skip
        table = TabulatedRadialMLP(block.conv_tp_weights, features, r_min=0.5,
                                   r_max=float(model.r_max), n_knots=1024)  # fmt: skip
        steps[f"interaction {k}: radial MLP, mace-torch"] = timed(
            block.conv_tp_weights, radial_in, [0]
        )
        steps[f"interaction {k}: radial, cubic table"] = timed(table, (lengths,), [0])
        node_feats, edge_attrs, weights = inputs[f"conv{k}"][:3]
        edge_index = data_graph["edge_index"]

        tp = unfused.model.interactions[k].conv_tp  # the e3nn tensor product itself

        def mace_conv(h, y, w, tp=tp, edges=edge_index):
            messages = tp(h[edges[0]], y, w)
            return torch.zeros(h.shape[0], messages.shape[1], dtype=h.dtype).index_add(
                0, edges[1], messages
            )

        fused = block.conv_tp
        grads = [1, 2] if k == 0 else [0, 1, 2]  # layer-0 features do not depend on positions
        steps[f"interaction {k}: convolution, mace-torch"] = timed(
            mace_conv, (node_feats, edge_attrs, weights), grads)  # fmt: skip
        steps[f"interaction {k}: convolution, fused"] = timed(
            lambda h, y, w, f=fused, e=edge_index: f(h, y, w, e), (node_feats, edge_attrs, weights),
            grads)  # fmt: skip
        contraction = model.products[k].symmetric_contractions
        fast = FastSymmetricContraction(contraction)
        steps[f"interaction {k}: symmetric contraction, mace-torch"] = timed(
            contraction, inputs[f"contraction{k}"], [0])  # fmt: skip
        steps[f"interaction {k}: symmetric contraction, sparse polynomial"] = timed(
            fast, inputs[f"contraction{k}"], [0])  # fmt: skip
    for step in steps.values():
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(1e3 * (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, ms in medians.items():
        print(f"{name:<55} {ms:8.2f} ms")
    write_result(f"profile_blocks_{args.dtype}_{args.threads}t",
                 {"environment": environment(), "ms_forward_backward": medians,
                  "n_atoms": len(atoms), "n_edges": int(graph["edge_index"].shape[1])})  # fmt: skip


if __name__ == "__main__":
    main()
