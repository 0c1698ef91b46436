"""Weight transfer: the pruned model's state dict, sliced record by record from the original.

Both models are read into layout records (:func:`~macelerate.mace.layout.read_layout`); every
record of the pruned model is matched to the original's record with the same key. e3nn weights
with a channel-carrying operand are sliced (:func:`~macelerate.compress.irreps_slicing.
flat_weight_index`, each operand selected block by block with
:func:`~macelerate.compress.irreps_slicing.select_operand`); contraction weights keep their
channels and, when the coupling irreps shrank, are mapped onto the new U basis by least squares;
everything else is copied unchanged, and derived buffers come from the new model.
"""

from __future__ import annotations

from typing import Any

import torch

from macelerate.compress.irreps_slicing import (
    basis_map,
    coupling_components,
    flat_weight_index,
    restrict_u,
    select_operand,
)
from macelerate.compress.plan import PrunePlan
from macelerate.errors import ModelFileError
from macelerate.mace.layout import DERIVED_STATE, ContractionWeight, E3nnWeight, read_layout


def _sliced(old: E3nnWeight, new: E3nnWeight, plan: PrunePlan, weight: torch.Tensor):
    """``new``'s flat weight (``[weight_numel]`` or radial rows ``[h, weight_numel]``)."""
    selections = [
        select_operand(a, b, None if b.space is None else plan.kept_channels(b.space))
        for a, b in zip(old.operands, new.operands)
    ]
    index, scale = flat_weight_index(old.paths, new.paths, selections)
    source = weight.detach().cpu()
    return (source.to(torch.float64)[..., index] * scale).to(source.dtype)


def _contraction(
    old: ContractionWeight,
    new: ContractionWeight,
    plan: PrunePlan,
    models: tuple[torch.nn.Module, torch.nn.Module],
    residuals: dict[str, float],
) -> torch.Tensor:
    """Weights ``[elements, params, channels]`` of one correlation order of a new contraction:
    the kept channels, mapped onto a new coupling basis if ``max_ell`` shrank."""
    kept = plan.kept_channels(str(new.operand.space))  # contraction inputs are message.t
    w_old = models[0].get_parameter(old.parameter).detach().cpu()[..., list(kept)]
    if [e[1:] for e in old.operand.irreps] == [e[1:] for e in new.operand.irreps]:
        return w_old  # same coupling basis: plain channel slicing
    selection = select_operand(old.operand, new.operand, kept)
    components = coupling_components(old.operand.irreps, selection)
    contractions: list[Any] = [
        models[0].get_submodule(old.module),
        models[1].get_submodule(new.module),
    ]
    u_old = contractions[0].U_tensors(new.nu).cpu()
    u_new = contractions[1].U_tensors(new.nu)
    x, residual = basis_map(restrict_u(u_old, components, nu=new.nu), u_new)
    residuals[f"{new.module}.nu{new.nu}"] = residual
    return torch.einsum("qp,epc->eqc", x, w_old.to(torch.float64)).to(w_old.dtype)


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


def transfer_weights(
    source: torch.nn.Module, target: torch.nn.Module, plan: PrunePlan
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The full state dict of ``target`` (the plan's architecture) from ``source``'s weights.

    Args:
        source: the plain original model; only read.
        target: a freshly built model of the pruned configuration; only read.
        plan: the kept channels per space.

    Returns:
        ``(state dict for target.load_state_dict, least-squares residual per re-based
        contraction order, sorted by name)``.

    Raises:
        ModelFileError: a weight of ``target`` without a counterpart in ``source``.
    """
    old_records = {record.key: record for record in read_layout(source).weights}
    state: dict[str, torch.Tensor] = {}
    residuals: dict[str, float] = {}
    for record in read_layout(target).weights:
        old = old_records.get(record.key)
        if old is None or type(old) is not type(record):
            raise ModelFileError(f"pruned weight {record.parameter!r} has no original weight")
        if isinstance(record, E3nnWeight) and isinstance(old, E3nnWeight):
            if any(op.space for op in record.operands):  # else: copied unchanged by _fill
                weight = source.get_parameter(old.parameter)
                state[record.parameter] = _sliced(old, record, plan, weight)
        elif isinstance(record, ContractionWeight) and isinstance(old, ContractionWeight):
            models = (source, target)
            state[record.parameter] = _contraction(old, record, plan, models, residuals)
    return _fill(target, source, state), dict(sorted(residuals.items()))
