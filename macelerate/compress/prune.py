"""Structural pruning of a mace-torch MACE by whole (channel, L) irrep blocks.

``prune`` scores blocks (:mod:`macelerate.compress.importance`), plans which to keep
(:func:`plan_pruning`) and applies the plan (:func:`apply_plan`): it builds a NEW, smaller plain
mace-torch ``ScaleShiftMACE`` from an edited config (channels, hidden ``max_L``, ``max_ell``) and
copies sliced weights into every module. Because whole irreps are kept or dropped, the pruned
model is exactly SO(3)-equivariant. The input is never modified.

What is exact: the pruned model computes exactly what the original computes with every weight
that WRITES a removed block set to zero: the output columns of removed channels (per channel
space), of hidden L > ``max_L`` and of interaction outputs with L > ``max_ell``, and the radial
weights of edge-tensor-product paths on edge attributes of order > ``max_ell`` (the tests check
this module by module). e3nn path normalisations change with the fan-in; the copied weights are
rescaled so that this holds. Removing edge-attribute orders also changes the symmetric
contraction's coupling basis (its U matrices); the old weights are mapped onto the new basis by
least squares (residual reported; ~1e-16 in practice, since the restricted old basis lies in the
span of the new one). Derived constants (U matrices, Wigner 3j) are recomputed by mace-torch, so
a float32-trained model converted to float64 gets float64-exact constants. The pruned model is not
fine-tuned.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from ase import Atoms

from macelerate.compress.importance import (
    DERIVED_STATE,
    ImportanceScores,
    block_importance,
    channel_spaces,
    plain_mace_model,
)
from macelerate.compress.irreps_slicing import (
    basis_map,
    contraction_macs,
    coupling_components,
    flat_weight_index,
    irreps_entries,
    irreps_string,
    mlp_macs,
    path_macs,
    paths_from_e3nn,
    restrict_u,
    select_by_ir,
    select_tp_outputs,
    selects_message,
)
from macelerate.data.labels import LabelKeys
from macelerate.errors import ModelFileError
from macelerate.models.config import build_mace_model, describe_mace_model


@dataclass(frozen=True)
class PrunePlan:
    """Which channel blocks and L orders a pruned MACE keeps.

    Attributes:
        channels: channels kept in every space (mace-torch needs one channel count).
        kept: per channel space (``node.t``, ``edge.t``, ``selector.t`` of non-residual
            blocks, ``message.t``, see :mod:`~macelerate.compress.importance`), the sorted kept
            channel indices. Every space keeps its own set.
        max_L: largest L of the pruned hidden features.
        max_ell: largest spherical-harmonic order of the pruned edge attributes.
        removed: human-readable removed blocks.
    """

    channels: int
    kept: tuple[tuple[str, tuple[int, ...]], ...]
    max_L: int
    max_ell: int
    removed: tuple[str, ...] = ()

    def kept_channels(self, space: str) -> tuple[int, ...]:
        """Sorted kept channels of ``space``."""
        return dict(self.kept)[space]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy."""
        out = asdict(self)
        out["kept"] = {space: list(kept) for space, kept in self.kept}
        out["removed"] = list(self.removed)
        return out


def _removed(spaces: dict, kept: dict, old_max: tuple[int, int], new_max: tuple[int, int]):
    removed = []
    for space, irreps in spaces.items():
        gone = sorted(set(range(irreps[0][0])) - set(kept[space]))
        removed += [f"{space} channel {c} (all L)" for c in gone]
    removed += [f"hidden L={ell}" for ell in range(new_max[0] + 1, old_max[0] + 1)]
    removed += [f"edge ell={ell}" for ell in range(new_max[1] + 1, old_max[1] + 1)]
    return tuple(removed)


def _limits(max_L: int | None, max_ell: int | None, old: tuple[int, int]) -> tuple[int, int]:
    new = (old[0] if max_L is None else max_L, old[1] if max_ell is None else max_ell)
    if not (0 <= new[0] <= old[0] and 0 <= new[1] <= old[1]):
        raise ValueError(f"max_L, max_ell = {new} must lie within the model's {old}")
    return new


def plan_pruning(
    scores: ImportanceScores, *, channels: int, max_L: int | None = None, max_ell: int | None = None
) -> PrunePlan:
    """Keep the ``channels`` highest-scoring channels of every space (ties: lower index).

    Args:
        scores: from :func:`~macelerate.compress.importance.block_importance`.
        channels: channels to keep, 1..the model's channels.
        max_L, max_ell: new hidden max L and edge max ell (``None``: unchanged).
    """
    if not 1 <= channels <= scores.num_channels:
        raise ValueError(f"channels must be in 1..{scores.num_channels}, got {channels}")
    limits = _limits(max_L, max_ell, (scores.max_L, scores.max_ell))
    kept = {}
    for space, values in scores.channel_scores.items():
        order = sorted(range(len(values)), key=lambda c: (-values[c], c))
        kept[space] = tuple(sorted(order[:channels]))
    spaces = {s: ((len(v), 0, 1),) for s, v in scores.channel_scores.items()}
    removed = _removed(spaces, kept, (scores.max_L, scores.max_ell), limits)
    return PrunePlan(channels, tuple(kept.items()), limits[0], limits[1], removed)


def uniform_plan(
    model: Any, kept: Sequence[int], *, max_L: int | None = None, max_ell: int | None = None
) -> PrunePlan:
    """A plan keeping the same channel indices ``kept`` in every space of ``model``."""
    plain = plain_mace_model(model)
    config, spaces = describe_mace_model(plain), channel_spaces(plain)
    hidden = irreps_entries(config["hidden_irreps"])
    old = (max(ell for _, ell, _ in hidden), int(config["max_ell"]))
    limits = _limits(max_L, max_ell, old)
    kept_sets = {space: tuple(sorted(kept)) for space in spaces}
    removed = _removed(spaces, kept_sets, old, limits)
    return PrunePlan(len(kept), tuple(kept_sets.items()), limits[0], limits[1], removed)


@dataclass(frozen=True)
class PruneReport:
    """What pruning did. ``macs_*``: dense multiply-add estimates of :func:`estimate_macs`."""

    parameters_before: int
    parameters_after: int
    macs_per_edge_before: int
    macs_per_edge_after: int
    macs_per_atom_before: int
    macs_per_atom_after: int
    removed: tuple[str, ...]
    importance: str
    plan: dict[str, Any]
    lstsq_residuals: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy."""
        out = asdict(self)
        out["removed"] = list(self.removed)
        return out


def estimate_macs(model: torch.nn.Module) -> tuple[int, int]:
    """Dense multiply-add estimate ``(per edge, per atom)`` of one energy evaluation of a MACE.

    Per edge: the radial MLPs and edge tensor products (Clebsch-Gordan contraction plus
    weighting, per path). Per atom: embedding, ``linear_up``, ``linear``, skip tensor product
    (node features x elements -> next node features in residual blocks; message x elements ->
    message in ``RealAgnosticInteractionBlock``), symmetric contractions, product linears and
    readouts. Backward passes (forces) cost about twice as much again; spherical harmonics and
    the radial basis are not counted.
    """
    model = plain_mace_model(model)  # unfused: conv_tp instructions are needed

    def e3nn_macs(module: torch.nn.Module, linear: bool) -> int:
        ops = (
            [module.irreps_in, module.irreps_out]
            if linear
            else [module.irreps_in1, module.irreps_in2, module.irreps_out]
        )
        return sum(
            path_macs(p, [ops[k][e].ir.dim for k, e in enumerate(p.entries)], linear=linear)
            for p in paths_from_e3nn(module)
        )

    per_edge, per_atom = 0, e3nn_macs(model.node_embedding.linear, True)
    for block, product, readout in zip(model.interactions, model.products, model.readouts):
        per_edge += mlp_macs(block.conv_tp_weights.hs) + e3nn_macs(block.conv_tp, False)
        per_atom += e3nn_macs(block.linear_up, True) + e3nn_macs(block.linear, True)
        per_atom += e3nn_macs(block.skip_tp, False) + e3nn_macs(product.linear, True)
        sc = product.symmetric_contractions
        num_ell = sum(ir.dim for _, ir in sc.irreps_in)
        for (mul, ir), contraction in zip(sc.irreps_out, sc.contractions):
            nus = range(1, contraction.correlation + 1)
            params = {nu: contraction.U_tensors(nu).shape[-1] for nu in nus}
            per_atom += contraction_macs(
                channels=mul, dim_out=ir.dim, num_ell=num_ell, params=params
            )
        for linear in (getattr(readout, name, None) for name in ("linear", "linear_1", "linear_2")):
            per_atom += e3nn_macs(linear, True) if linear is not None else 0
    return per_edge, per_atom


def pruned_config(config: dict[str, Any], plan: PrunePlan) -> dict[str, Any]:
    """``config`` (from ``describe_mace_model``) with the plan's channels, max_L and max_ell."""
    hidden = [e for e in irreps_entries(config["hidden_irreps"]) if e[1] <= plan.max_L]
    irreps = irreps_string([(plan.channels, ell, p) for _, ell, p in hidden])
    return {**config, "hidden_irreps": irreps, "max_ell": plan.max_ell}


def _sliced(old: torch.nn.Module, new: torch.nn.Module, selections, weight=None) -> torch.Tensor:
    """``new``'s flat weight (or radial-MLP columns ``weight [h, numel]``) sliced from ``old``."""
    index, scale = flat_weight_index(paths_from_e3nn(old), paths_from_e3nn(new), selections)
    source = (old.weight if weight is None else weight).detach().cpu()
    return (source.to(torch.float64)[..., index] * scale).to(source.dtype)


def _contraction_weights(old, new, kept, components, prefix, residuals) -> dict[str, torch.Tensor]:
    """Weights ``[elements, params, channels]`` per correlation order of one new Contraction."""
    state, corr = {}, new.correlation
    for nu in range(1, corr + 1):
        name = "weights_max" if nu == corr else f"weights.{corr - 1 - nu}"
        w_old = old.get_parameter(name).detach().cpu()[..., list(kept)]
        u_old, u_new = old.U_tensors(nu).cpu(), new.U_tensors(nu)
        if components is None:
            state[f"{prefix}.{name}"] = w_old  # same coupling basis: plain channel slicing
            continue
        x, residuals[f"{prefix}.nu{nu}"] = basis_map(restrict_u(u_old, components, nu=nu), u_new)
        w_new = torch.einsum("qp,epc->eqc", x, w_old.to(torch.float64))
        state[f"{prefix}.{name}"] = w_new.to(w_old.dtype)
    return state


def _same(old_irreps, new_irreps, kept=None):
    """Selection between two e3nn irreps matched by (l, parity)."""
    return select_by_ir(irreps_entries(old_irreps), irreps_entries(new_irreps), kept)


def _interaction_state(old, new, t: int, sel: dict, attrs) -> dict[str, torch.Tensor]:
    """Weights of ``interactions[t]``: linear_up, radial MLP output layer, linear, skip_tp
    (``node.t`` x elements -> ``node.t+1`` if residual, ``selector.t`` x elements ->
    ``message.t`` if :func:`~macelerate.compress.irreps_slicing.selects_message`)."""
    pre, node, edge, msg = (
        f"interactions.{t}",
        sel[f"node.{t}"],
        sel[f"edge.{t}"],
        sel[f"message.{t}"],
    )
    if selects_message(old):
        mixed, skip = sel[f"selector.{t}"], [sel[f"selector.{t}"], attrs, msg]
    else:
        mixed, skip = msg, [node, attrs, sel[f"node.{t + 1}"]]
    tp_old, tp_new = old.conv_tp, new.conv_tp
    sh = _same(tp_old.irreps_in2, tp_new.irreps_in2)
    old_paths, new_paths = paths_from_e3nn(tp_old), paths_from_e3nn(tp_new)
    mid_old, mid_new = irreps_entries(tp_old.irreps_out), irreps_entries(tp_new.irreps_out)
    mid = select_tp_outputs(old_paths, new_paths, mid_old, mid_new, [edge, sh])
    last = f"{pre}.conv_tp_weights.layer{len(new.conv_tp_weights.hs) - 2}.weight"
    return {
        f"{pre}.linear_up.weight": _sliced(old.linear_up, new.linear_up, [node, edge]),
        last: _sliced(tp_old, tp_new, [edge, sh, mid], weight=old.conv_tp_weights[-1].weight),
        f"{pre}.linear.weight": _sliced(old.linear, new.linear, [mid, mixed]),
        f"{pre}.skip_tp.weight": _sliced(old.skip_tp, new.skip_tp, skip),
    }


def _product_state(old, new, t: int, sel: dict, plan: PrunePlan, residuals: dict) -> dict:
    """Weights of ``products[t]``: symmetric contractions (sliced, mapped onto a new coupling
    basis if ``max_ell`` shrank) and the product linear."""
    sc_old, sc_new = old.symmetric_contractions, new.symmetric_contractions
    coupling_old, coupling_new = irreps_entries(sc_old.irreps_in), irreps_entries(sc_new.irreps_in)
    changed = [e[1:] for e in coupling_old] != [e[1:] for e in coupling_new]
    msg = sel[f"message.{t}"]
    components = coupling_components(coupling_old, msg) if changed else None
    kept = plan.kept_channels(f"message.{t}")
    old_out = [e[1:] for e in irreps_entries(sc_old.irreps_out)]
    state = {}
    for k, (_, ell, p) in enumerate(irreps_entries(sc_new.irreps_out)):
        j = old_out.index((ell, p))
        prefix = f"products.{t}.symmetric_contractions.contractions.{k}"
        state.update(
            _contraction_weights(
                sc_old.contractions[j], sc_new.contractions[k], kept, components, prefix, residuals
            )
        )
    lin_in = _same(old.linear.irreps_in, new.linear.irreps_in, kept)
    out = sel[f"node.{t + 1}"]
    state[f"products.{t}.linear.weight"] = _sliced(old.linear, new.linear, [lin_in, out])
    return state


def _transfer(source, target, plan: PrunePlan) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Sliced weights of every channel-carrying parameter of ``target``, and lstsq residuals."""
    old_spaces, new_spaces = channel_spaces(source), channel_spaces(target)
    sel = {s: select_by_ir(old_spaces[s], new_spaces[s], plan.kept_channels(s)) for s in new_spaces}
    emb_old, emb_new = source.node_embedding.linear, target.node_embedding.linear
    attrs = _same(emb_old.irreps_in, emb_new.irreps_in)
    state = {"node_embedding.linear.weight": _sliced(emb_old, emb_new, [attrs, sel["node.0"]])}
    residuals: dict[str, float] = {}
    for t in range(len(target.interactions)):
        state.update(
            _interaction_state(source.interactions[t], target.interactions[t], t, sel, attrs)
        )
        state.update(
            _product_state(source.products[t], target.products[t], t, sel, plan, residuals)
        )
        r_old, r_new = source.readouts[t], target.readouts[t]
        name = "linear_1" if hasattr(r_new, "linear_1") else "linear"  # linear_2: unchanged
        first_old, first_new = getattr(r_old, name), getattr(r_new, name)
        fixed = _same(first_old.irreps_out, first_new.irreps_out)
        state[f"readouts.{t}.{name}.weight"] = _sliced(
            first_old, first_new, [sel[f"node.{t + 1}"], fixed]
        )
    return state, residuals


def _fill(target: torch.nn.Module, source: torch.nn.Module, state: dict) -> dict[str, torch.Tensor]:
    """Complete ``state``: derived buffers from ``target``, the rest copied from ``source``."""
    old = source.state_dict()
    full = {}
    for key, value in target.state_dict().items():
        if key in state:
            full[key] = state[key]
        elif any(part in key for part in DERIVED_STATE):
            full[key] = value
        elif key in old and old[key].shape == value.shape:
            full[key] = old[key]
        else:
            raise ModelFileError(
                f"pruning has no rule for {key!r}; this MACE variant is unsupported"
            )
    return full


def apply_plan(
    model_or_potential: Any, plan: PrunePlan, *, importance: str = "explicit"
) -> tuple[torch.nn.Module, PruneReport]:
    """Build the pruned model a plan describes (a new plain ``ScaleShiftMACE`` in eval mode).

    Args:
        model_or_potential: a ``ScaleShiftMACE`` or ``Potential``; only read.
        plan: from :func:`plan_pruning` or :func:`uniform_plan` for this model.
        importance: the importance method the plan came from (recorded in the report).
    """
    start = time.perf_counter()
    source = plain_mace_model(model_or_potential)
    target = build_mace_model(pruned_config(describe_mace_model(source), plan))
    state, residuals = _transfer(source, target, plan)
    target.load_state_dict(_fill(target, source, state))
    target.eval()
    (edge_before, atom_before), (edge_after, atom_after) = (
        estimate_macs(source),
        estimate_macs(target),
    )
    report = PruneReport(
        parameters_before=sum(p.numel() for p in source.parameters()),
        parameters_after=sum(p.numel() for p in target.parameters()),
        macs_per_edge_before=edge_before,
        macs_per_edge_after=edge_after,
        macs_per_atom_before=atom_before,
        macs_per_atom_after=atom_after,
        removed=plan.removed,
        importance=importance,
        plan=plan.to_dict(),
        lstsq_residuals=residuals,
        seconds=time.perf_counter() - start,
    )
    return target, report


def prune(
    model_or_potential: Any,
    *,
    channels: int,
    max_L: int | None = None,
    max_ell: int | None = None,
    importance: str = "taylor",
    calibration: Sequence[Atoms] | None = None,
    label_keys: LabelKeys | None = None,
    seed: int = 0,
) -> tuple[torch.nn.Module, PruneReport]:
    """Prune a MACE to ``channels`` channels (and optionally smaller ``max_L`` / ``max_ell``).

    Args:
        model_or_potential: a ``ScaleShiftMACE`` or ``Potential``; never modified.
        channels: channels kept in every channel space.
        max_L, max_ell: new hidden max L and edge-attribute max ell (``None``: unchanged).
        importance: ``taylor`` (needs ``calibration``), ``magnitude`` or ``random``.
        calibration: structures for Taylor importance.
        label_keys: reference labels in ``calibration``; ``None``: the model's own predictions.
        seed: random scores / Taylor probes.

    Returns:
        ``(pruned plain mace-torch ScaleShiftMACE in eval mode, PruneReport)``. The pruned model
        is not fine-tuned; recovery training is up to the caller.
    """
    if importance == "taylor" and not calibration:
        raise ValueError("taylor importance needs calibration structures (or use 'magnitude')")
    source = plain_mace_model(model_or_potential)  # rebuilt once if it is a fused Potential
    scores = block_importance(
        source,
        list(calibration or ()),
        method=importance,  # type: ignore[arg-type]
        labels=label_keys,
        seed=seed,
    )
    plan = plan_pruning(scores, channels=channels, max_L=max_L, max_ell=max_ell)
    model, report = apply_plan(source, plan, importance=importance)
    return model, replace(report, importance=f"{importance} ({scores.labels})")
