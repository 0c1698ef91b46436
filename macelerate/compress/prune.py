"""Structural pruning of a mace-torch MACE by whole (channel, L) irrep blocks.

``prune`` scores blocks (:mod:`macelerate.compress.importance`), plans which to keep
(:mod:`macelerate.compress.plan`) and applies the plan (:func:`apply_plan`): it builds a NEW,
smaller plain mace-torch ``ScaleShiftMACE`` from an edited config (channels, hidden ``max_L``,
``max_ell``) and copies sliced weights into every module (:mod:`macelerate.compress.transfer`).
Because whole irreps are kept or dropped, the pruned model is exactly SO(3)-equivariant. The
input is never modified.

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

from macelerate.compress.importance import block_importance
from macelerate.compress.macs import estimate_macs
from macelerate.compress.plan import PrunePlan, plan_pruning
from macelerate.compress.source import plain_mace_model
from macelerate.compress.transfer import transfer_weights
from macelerate.data.labels import LabelKeys
from macelerate.mace.config import build_mace_model, describe_mace_model
from macelerate.mace.irreps import irreps_entries, irreps_string
from macelerate.records import TransformRecord


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

    def to_record(self) -> TransformRecord:
        """The record a checkpoint's ``transforms_applied`` list gets for this pruning."""
        options = {key: self.plan.get(key) for key in ("channels", "max_L", "max_ell")}
        return TransformRecord("prune", True, {**options, "importance": self.importance},
                               self.to_dict())  # fmt: skip


def recovery_record(*, data: str, steps: int) -> TransformRecord:
    """The record of recovery fine-tuning after pruning.

    Args:
        data: the fine-tuning data file.
        steps: optimisation steps taken.
    """
    return TransformRecord("recovery", True, {"data": data}, {"steps": steps})


def pruned_config(config: dict[str, Any], plan: PrunePlan) -> dict[str, Any]:
    """``config`` (from ``describe_mace_model``) with the plan's channels, max_L and max_ell."""
    hidden = [e for e in irreps_entries(config["hidden_irreps"]) if e[1] <= plan.max_L]
    irreps = irreps_string([(plan.channels, ell, p) for _, ell, p in hidden])
    return {**config, "hidden_irreps": irreps, "max_ell": plan.max_ell}


def apply_plan(
    model_or_potential: Any, plan: PrunePlan, *, importance: str = "explicit"
) -> tuple[torch.nn.Module, PruneReport]:
    """Build the pruned model a plan describes (a new plain ``ScaleShiftMACE`` in eval mode).

    Args:
        model_or_potential: a ``ScaleShiftMACE`` or ``Potential``; only read.
        plan: from :func:`~macelerate.compress.plan.plan_pruning` or
            :func:`~macelerate.compress.plan.uniform_plan` for this model.
        importance: the importance method the plan came from (recorded in the report).
    """
    start = time.perf_counter()
    source = plain_mace_model(model_or_potential)
    target = build_mace_model(pruned_config(describe_mace_model(source), plan))
    state, residuals = transfer_weights(source, target, plan)
    target.load_state_dict(state)
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
    progress: bool = False,
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
        progress: show a progress bar over the calibration structures.

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
        progress=progress,
    )
    plan = plan_pruning(scores, channels=channels, max_L=max_L, max_ell=max_ell)
    model, report = apply_plan(source, plan, importance=importance)
    return model, replace(report, importance=f"{importance} ({scores.labels})")
