"""Importance of whole (channel, L) irrep blocks of a mace-torch MACE, and a pruning plan from it.

Channel spaces. The channels of a MACE are not one index shared by the whole network: every
equivariant linear layer (``o3.Linear``, the skip ``FullyConnectedTensorProduct``) mixes channels
freely, so a channel index only means something between two such mixers. Between them sit
channel-wise maps (the ``uvu`` edge tensor product, the per-channel symmetric contraction), which
carry a channel through unchanged. That gives ``3 * num_interactions + 1`` independent spaces,
plus one per non-residual block:

* ``node.t`` (t = 0..T): node features entering interaction t (``node.0``: the embedding;
  ``node.T``: the last layer's scalars). Written by ``node_embedding`` (t = 0) or by
  ``products[t-1].linear`` and, for a residual block t-1, ``interactions[t-1].skip_tp``; read by
  ``interactions[t]`` (``linear_up``, and ``skip_tp`` if residual) and ``readouts[t-1]``.
* ``edge.t``: ``interactions[t].linear_up`` output = the channels of the edge tensor product
  ``conv_tp`` (each path's radial weights per channel) = the input channels of
  ``interactions[t].linear``.
* ``selector.t``, only for a non-residual ``RealAgnosticInteractionBlock`` t (mace-torch's
  default first block), which applies its ``skip_tp`` (the "selector", a fully connected tensor
  product with the element one-hot) to the message instead of to the node features:
  ``interactions[t].linear`` output = ``skip_tp``'s first input. ``skip_tp`` mixes channels
  (``uvw``, weights ``[in, elements, out]`` per L), so its input and output are separate spaces,
  exactly like the two sides of a linear; sharing one set would be exact too, but needlessly
  constrained. The block returns no residual (``sc = None``), so ``node.t+1`` is written by
  ``products[t].linear`` alone.
* ``message.t``: the product's input = the symmetric contraction's channels (``products[t]``,
  weights ``[elements, params, channels]``) = ``products[t].linear``'s input. Written by
  ``interactions[t].linear`` (residual block) or ``interactions[t].skip_tp`` (non-residual).

A channel block of a space spans every L of that channel (the symmetric contraction couples all L
of one channel). Each space keeps its OWN set of channels (same count in every space, which
mace-torch requires): that is exact, because the spaces only meet through full linear mixers, and
prunes better than one shared set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms

from macelerate.compress.irreps_slicing import (
    Irrep,
    WeightSlice,
    channel_spaces,
    irreps_entries,
    irreps_string,
    weight_slices,
)
from macelerate.data.labels import LabelKeys, require_label
from macelerate.errors import ModelFileError
from macelerate.graph.batch import build_graph
from macelerate.models.config import build_mace_model, describe_mace_model

Method = Literal["taylor", "magnitude", "random"]
SUPPORTED_INTERACTIONS = ("RealAgnosticResidualInteractionBlock", "RealAgnosticInteractionBlock")
"""Interaction classes the block surgery covers, at any position (see ``selects_message``)."""
DERIVED_STATE = ("output_mask", "_w3j", "U_matrix_", "_zeroed", "coefficients_")
"""Buffers a mace/e3nn module derives from its irreps; a rebuilt module computes its own."""


def plain_mace_model(model_or_potential: Any) -> torch.nn.Module:
    """The unfused mace-torch ``ScaleShiftMACE`` behind the input, for READING only.

    Accepts a ``ScaleShiftMACE`` (returned as is) or a
    :class:`~macelerate.models.potential.Potential` (its model runs fused message passing, so an
    unfused copy is rebuilt from its config and weights). Callers never modify the result.

    Raises:
        ModelFileError: not a ScaleShiftMACE with :data:`SUPPORTED_INTERACTIONS`
            interactions, one head, no edge irreps, embeddings or agnostic products, or a
            Potential with a precision policy.
    """
    model = getattr(model_or_potential, "model", model_or_potential)
    if getattr(model_or_potential, "precision", None) is not None:
        raise ModelFileError("prune a Potential without a precision policy (load it in fp64/fp32)")
    config = describe_mace_model(model)
    check_prunable(config)
    if all(hasattr(block.conv_tp, "instructions") for block in model.interactions):
        return model
    fresh = build_mace_model(config)
    source = model.state_dict()
    for name, _ in fresh.named_parameters():
        if name not in source:
            raise ModelFileError(f"model has no weight {name!r}; it is not a plain mace MACE")
    state = {
        key: source[key] if key in source and source[key].shape == value.shape else value
        for key, value in fresh.state_dict().items()
    }
    fresh.load_state_dict(state)
    return fresh.eval()


def check_prunable(config: dict[str, Any]) -> None:
    """Refuse model configurations the block surgery does not cover (one clear message)."""
    problems = [
        f"{key}={config.get(key)!r}"
        for key, ok in (
            ("interaction_cls", config.get("interaction_cls") in SUPPORTED_INTERACTIONS),
            (
                "interaction_cls_first",
                config.get("interaction_cls_first") in SUPPORTED_INTERACTIONS,
            ),
            ("heads", len(config.get("heads") or ["default"]) == 1),
            ("edge_irreps", config.get("edge_irreps") is None),
            ("embedding_specs", config.get("embedding_specs") is None),
            ("use_agnostic_product", not config.get("use_agnostic_product")),
            ("use_last_readout_only", not config.get("use_last_readout_only")),
        )
        if not ok
    ]
    if problems:
        raise ModelFileError(
            f"cannot prune this MACE ({', '.join(problems)}): pruning supports single-head "
            f"ScaleShiftMACE models with {' or '.join(SUPPORTED_INTERACTIONS)} interactions"
        )


@dataclass(frozen=True)
class ImportanceScores:
    """Scores of channel blocks (higher: more important) and of L orders, per channel space.

    Attributes:
        method: ``"taylor"``, ``"magnitude"`` or ``"random"``.
        labels: ``"labels"`` (reference labels), ``"model"`` (the model's own predictions) or
            ``"none"`` (methods that read no data).
        spaces: irreps string of every channel space (``node.t``, ``edge.t``, ``selector.t``,
            ``message.t``).
        channel_scores: per space, [channels] scores (a channel block spans all its L).
        degree_scores: per space, score per L (``message.t``: per ell, including the radial
            weights of edge-tensor-product paths on edge attributes of that ell).
        num_channels, max_L, max_ell: the scored model's channels, hidden max L and max ell.
        num_structures: calibration structures used.
    """

    method: str
    labels: str
    spaces: dict[str, str]
    channel_scores: dict[str, tuple[float, ...]]
    degree_scores: dict[str, dict[int, float]]
    num_channels: int
    max_L: int
    max_ell: int
    num_structures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy (L keys become strings)."""
        out = asdict(self)
        out["degree_scores"] = {
            s: {str(k): v for k, v in d.items()} for s, d in self.degree_scores.items()
        }
        out["channel_scores"] = {s: list(v) for s, v in self.channel_scores.items()}
        return out


def _layout(model: torch.nn.Module) -> tuple[dict[str, tuple[Irrep, ...]], int, int, int]:
    config = describe_mace_model(model)
    spaces = channel_spaces(model)
    hidden = irreps_entries(config["hidden_irreps"])
    return spaces, hidden[0][0], max(ell for _, ell, _ in hidden), int(config["max_ell"])


def _reduce(
    slices: Sequence[WeightSlice], values: dict[str, torch.Tensor], spaces: dict, reducer
) -> tuple[dict[str, np.ndarray], dict[str, dict[int, float]]]:
    """Sum ``reducer(per-slice block sums)`` over slices, for channels and for L orders."""
    channel = {s: np.zeros(irreps[0][0]) for s, irreps in spaces.items()}
    degree: dict[str, dict[int, float]] = {s: {} for s in spaces}
    for sl in slices:
        if sl.parameter not in values:  # mace's frozen all-zero (EmptyParam) weights
            continue
        flat = values[sl.parameter].reshape(-1).to(torch.float64)
        for index, target in ((sl.channels, "c"), (sl.degrees, "l")):
            if index is None:
                continue
            mask = index >= 0
            size = int(index.max()) + 1 if index.numel() else 0
            sums = torch.zeros(size, dtype=torch.float64).index_add_(0, index[mask], flat[mask])
            block = reducer(sums).numpy()
            if target == "c":
                channel[sl.space][: len(block)] += block
                continue
            scores = degree[sl.space]
            for ell in torch.unique(index[mask]).tolist():
                scores[ell] = scores.get(ell, 0.0) + float(block[ell])
    return channel, degree


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
    if labels == "model":
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


def _taylor(model, structures, labels, slices, spaces, *, weights, batch_size, probes, seed):
    """Channel and L scores: |sum theta * dL/dtheta| per block slice (labels), or the mean over
    probes of (sum theta * dP/dtheta)^2, an unbiased estimate of the Gauss-Newton loss increase
    sum_n w_n (theta_s . df_n/dtheta)^2 of removing the slice (own predictions: the loss and its
    gradient vanish at theta, so the first-order term is identically zero)."""
    params = {  # private leaf copies: the model itself is only read (torch.func.functional_call)
        n: p.detach().clone().requires_grad_(True)
        for n, p in model.named_parameters()
        if type(p).__name__ != "EmptyParam"  # mace's frozen all-zero contraction weights
    }
    probe = torch.Generator().manual_seed(seed) if labels == "model" else None
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    channel = {s: np.zeros(irreps[0][0]) for s, irreps in spaces.items()}
    degree: dict[str, dict[int, float]] = {s: {} for s in spaces}
    z_table = [int(z) for z in model.atomic_numbers]
    dtype = model.r_max.dtype
    for start in range(0, len(structures), batch_size):
        batch = structures[start : start + batch_size]
        graph = build_graph(
            batch, cutoff=float(model.r_max), z_table=z_table, dtype=dtype, min_distance=None
        )
        targets = _targets(model, batch, start, graph, labels)
        inputs = {"training": True, "compute_force": True}
        out = torch.func.functional_call(model, params, (_graph_inputs(graph),), inputs)
        rounds = probes if probe is not None else 1
        for k in range(rounds):
            loss = _objective(out, graph, targets, weights, probe)
            g = torch.autograd.grad(
                loss, list(params.values()), retain_graph=k < rounds - 1, allow_unused=True
            )
            g = {
                n: torch.zeros_like(p) if gi is None else gi
                for (n, p), gi in zip(params.items(), g)
            }
            if probe is None:
                grads = {n: grads[n] + g[n] for n in params}
                continue
            values = {n: p.detach() * g[n] for n, p in params.items()}  # theta * dP/dtheta
            c, d = _reduce(slices, values, spaces, torch.square)
            for s in spaces:
                channel[s] += c[s] / probes
                for ell, v in d[s].items():
                    degree[s][ell] = degree[s].get(ell, 0.0) + v / probes
    if probe is None:
        values = {n: p.detach() * grads[n] for n, p in params.items()}
        return _reduce(slices, values, spaces, torch.abs)
    return channel, degree


def block_importance(
    model: Any,
    structures: Sequence[Atoms] = (),
    *,
    method: Method,
    labels: LabelKeys | Literal["model"] | None = None,
    seed: int = 0,
    energy_weight: float = 1.0,
    forces_weight: float = 10.0,
    batch_size: int = 4,
    probes: int = 4,
) -> ImportanceScores:
    """Score every channel block (and L order) of every channel space of a MACE.

    Args:
        model: a ``ScaleShiftMACE`` or ``Potential`` (only read).
        structures: calibration structures (``taylor`` only).
        method: ``magnitude``: L2 norm of every weight reading or writing the block;
            ``taylor``: see below; ``random``: seeded uniform scores (a control).
        labels: ``LabelKeys`` naming reference energy/forces in ``structures``; ``"model"`` or
            ``None``: the model's own predictions. With labels the score is the first-order
            Taylor estimate ``|sum theta * dL/dtheta|`` per parameter slice, summed over slices;
            with own predictions that term is zero, so ``probes`` random +-1 projections of the
            outputs estimate the second-order (Gauss-Newton) ``sum_n w_n (theta . df_n)^2``.
        seed: seeds ``random`` scores and the probes.
        energy_weight, forces_weight: loss weights of the energy-per-atom (eV/atom) and force
            component (eV/Å) squared errors, averaged over structures and components.
        batch_size: structures per forward/backward pass.
        probes: random projections per batch (``labels="model"``).

    Returns:
        :class:`ImportanceScores`. Taylor gradients run in the model's dtype on private copies
        of its parameters.
    """
    plain = plain_mace_model(model)
    spaces, num_channels, max_L, max_ell = _layout(plain)
    kind = "none" if method != "taylor" else ("model" if labels in (None, "model") else "labels")
    if method == "random":
        rng = np.random.default_rng(seed)
        channel = {s: rng.random(irreps[0][0]) for s, irreps in spaces.items()}
        degree = {
            s: {ell: float(rng.random()) for _, ell, _ in irreps} for s, irreps in spaces.items()
        }
    elif method == "magnitude":
        values = {n: p.detach().pow(2) for n, p in plain.named_parameters()}
        channel, degree = _reduce(weight_slices(plain), values, spaces, lambda s: s)
        channel = {s: np.sqrt(v) for s, v in channel.items()}
        degree = {s: {ell: float(np.sqrt(v)) for ell, v in d.items()} for s, d in degree.items()}
    elif method == "taylor":
        if not structures:
            raise ValueError("taylor importance needs calibration structures")
        n_atoms = sum(len(a) for a in structures)
        weights = (energy_weight / len(structures), forces_weight / (3 * n_atoms))
        channel, degree = _taylor(
            plain,
            list(structures),
            "model" if kind == "model" else labels,
            weight_slices(plain),
            spaces,
            weights=weights,
            batch_size=batch_size,
            probes=probes,
            seed=seed,
        )
    else:
        raise ValueError(f"unknown importance method {method!r}: taylor, magnitude or random")
    return ImportanceScores(
        method=method,
        labels=kind,
        spaces={s: irreps_string(irreps) for s, irreps in spaces.items()},
        channel_scores={s: tuple(float(x) for x in v) for s, v in channel.items()},
        degree_scores={s: dict(sorted(d.items())) for s, d in degree.items()},
        num_channels=num_channels,
        max_L=max_L,
        max_ell=max_ell,
        num_structures=len(structures) if method == "taylor" else 0,
    )
