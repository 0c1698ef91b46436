"""Taylor importance: how much the loss (or the predictions) move when a block is removed.

With reference labels, a block's score is the first-order estimate ``|sum theta * dL/dtheta|``
over the weights that read or write it (summed over its slices). With the model's own predictions
the loss and its gradient vanish at theta, so ``probes`` random +-1 projections of the outputs
estimate the second-order (Gauss-Newton) ``sum_n w_n (theta_s . df_n/dtheta)^2`` instead: the
mean over probes of ``(sum theta * dP/dtheta)^2`` is an unbiased estimate of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from tqdm import tqdm

from macelerate.compress.scoring import (
    BlockScores,
    ImportanceOptions,
    reduce_slices,
    weight_slices,
    zero_scores,
)
from macelerate.data.labels import LabelKeys, require_label
from macelerate.graph.batch import build_graph
from macelerate.mace.contract import EMPTY_PARAM_CLASS
from macelerate.mace.layout import MaceLayout


def _graph_inputs(graph: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    data = dict(graph)
    data["positions"] = graph["positions"].detach().clone()  # mace sets requires_grad in place
    return data


def _label(batch: Sequence[Atoms], key: str | None, start: int, dtype) -> torch.Tensor | None:
    """One label of every structure, flattened and concatenated (``None`` if ``key`` is)."""
    if key is None:
        return None
    values = [
        np.reshape(require_label(a, key, index=start + i, path="calibration structures"), -1)
        for i, a in enumerate(batch)
    ]
    return torch.as_tensor(np.concatenate(values), dtype=dtype)


def _targets(model, batch, start: int, graph, labels: LabelKeys | str) -> tuple:
    """(energy [G] eV or None, forces [N, 3] eV/Å or None) the loss compares against."""
    if isinstance(labels, str):  # "model": its own predictions
        out = model(_graph_inputs(graph), training=False, compute_force=True)
        return out["energy"].detach(), out["forces"].detach()
    dtype = graph["positions"].dtype
    forces = _label(batch, labels.forces, start, dtype)
    energy = _label(batch, labels.energy, start, dtype)
    return energy, None if forces is None else forces.reshape(-1, 3)


def _objective(out, graph, targets, weights, probe: torch.Generator | None) -> torch.Tensor:
    """Labels: sum_n w_n (f_n - y_n)^2. Probe: sum_n r_n sqrt(w_n) f_n, r_n = +-1 at random.

    ``f_n`` runs over energies per atom (weight ``weights[0]``) and force components
    (``weights[1]``).
    """
    n_atoms = (graph["ptr"][1:] - graph["ptr"][:-1]).to(out["energy"].dtype)  # [G]
    terms = [out["energy"].sum() * 0.0]
    pairs = (
        (out["energy"] / n_atoms, targets[0], n_atoms, weights[0]),
        (out["forces"], targets[1], 1.0, weights[1]),
    )
    for pred, ref, scale, w in pairs:
        if ref is None or w == 0:
            continue
        if probe is None:
            terms.append(w * (pred - ref / scale).pow(2).sum())
        else:
            signs = torch.randint(0, 2, pred.shape, generator=probe).to(pred.dtype) * 2 - 1
            terms.append(w**0.5 * (signs * pred).sum())
    return torch.stack(terms).sum()


def _gradient(loss: torch.Tensor, params: dict[str, torch.Tensor], *, retain: bool) -> dict:
    """d loss / d params (zeros for parameters the loss does not reach)."""
    g = torch.autograd.grad(loss, list(params.values()), retain_graph=retain, allow_unused=True)
    return {n: torch.zeros_like(p) if gi is None else gi for (n, p), gi in zip(params.items(), g)}


def _batches(model, structures: list[Atoms], labels, options: ImportanceOptions):
    """Per calibration batch: (graph, targets), with a progress bar over the structures."""
    z_table = [int(z) for z in model.atomic_numbers]
    dtype = model.r_max.dtype
    bar = tqdm(total=len(structures), disable=not options.progress, desc="importance", unit="frame")
    with bar:
        for start in range(0, len(structures), options.batch_size):
            batch = structures[start : start + options.batch_size]
            graph = build_graph(
                batch, cutoff=float(model.r_max), z_table=z_table, dtype=dtype, min_distance=None
            )
            yield graph, _targets(model, batch, start, graph, labels)
            bar.update(len(batch))


def taylor_scores(
    model: torch.nn.Module,
    layout: MaceLayout,
    structures: Sequence[Atoms],
    options: ImportanceOptions,
) -> BlockScores:
    """Taylor channel and L scores (see the module docstring), in the model's dtype on private
    leaf copies of its parameters: the model itself is only read (``functional_call``).

    Raises:
        ValueError: no calibration structures.
    """
    if not structures:
        raise ValueError("taylor importance needs calibration structures")
    own = options.labels in (None, "model")
    n_atoms = sum(len(a) for a in structures)
    weights = (options.energy_weight / len(structures), options.forces_weight / (3 * n_atoms))
    params = {
        n: p.detach().clone().requires_grad_(True)
        for n, p in model.named_parameters()
        if type(p).__name__ != EMPTY_PARAM_CLASS  # mace's frozen all-zero contraction weights
    }
    probe = torch.Generator().manual_seed(options.seed) if own else None
    slices, spaces = weight_slices(layout), layout.spaces
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    channel, degree = zero_scores(spaces)
    labels = "model" if own else options.labels
    for graph, targets in _batches(model, list(structures), labels, options):
        inputs = {"training": True, "compute_force": True}
        out = torch.func.functional_call(model, params, (_graph_inputs(graph),), inputs)
        if probe is None:
            g = _gradient(_objective(out, graph, targets, weights, None), params, retain=False)
            grads = {n: grads[n] + g[n] for n in params}
            continue
        for k in range(options.probes):
            loss = _objective(out, graph, targets, weights, probe)
            g = _gradient(loss, params, retain=k < options.probes - 1)
            values = {n: p.detach() * g[n] for n, p in params.items()}  # theta * dP/dtheta
            c, d = reduce_slices(slices, values, spaces, torch.square)
            for s in spaces:
                channel[s] += c[s] / options.probes
                for ell, v in d[s].items():
                    degree[s][ell] = degree[s].get(ell, 0.0) + v / options.probes
    if probe is None:
        values = {n: p.detach() * grads[n] for n, p in params.items()}
        channel, degree = reduce_slices(slices, values, spaces, torch.abs)
    kind = "model" if own else "labels"
    return BlockScores(channel, degree, labels=kind, num_structures=len(structures))
