"""The plain mace-torch model pruning reads: unfused, single-head, of a supported layout."""

from __future__ import annotations

import re
from typing import Any

import torch

from macelerate.errors import ModelFileError
from macelerate.mace.config import build_mace_model, describe_mace_model
from macelerate.mace.layout import check_supported


def plain_mace_model(model_or_potential: Any) -> torch.nn.Module:
    """The unfused mace-torch ``ScaleShiftMACE`` behind the input, for READING only.

    Accepts a ``ScaleShiftMACE`` (returned as is) or a
    :class:`~macelerate.models.potential.Potential` (its model runs fused message passing, so an
    unfused copy is rebuilt from its config and weights). Callers never modify the result.

    Raises:
        ModelFileError: not a model :func:`~macelerate.mace.layout.check_supported` accepts,
            or a Potential with a precision policy.
    """
    model = getattr(model_or_potential, "model", model_or_potential)
    if getattr(model_or_potential, "precision", None) is not None:
        raise ModelFileError("prune a Potential without a precision policy (load it in fp64/fp32)")
    config = describe_mace_model(model)
    check_supported(config)
    if all(hasattr(block.conv_tp, "instructions") for block in model.interactions):
        return model
    fresh = build_mace_model(config)
    source = model.state_dict()
    for name, _ in fresh.named_parameters():
        if name not in source:
            raise ModelFileError(f"model has no weight {name!r}; it is not a plain mace MACE")
    load_unfused_state(fresh, source)
    return fresh.eval()


def load_unfused_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` (of a fused copy of ``module``) into the unfused ``module``, in place.

    Entries ``module`` lacks are ignored and entries ``state`` lacks keep ``module``'s values
    (e3nn's constant buffers); a radial layer the runtime narrowed to its live paths' columns
    is widened back (:func:`_widened_radial_weight`). Works for a MACE and for a student (keys
    under ``backbone.``).

    Raises:
        ModelFileError: a weight of another shape that is not such a radial layer.
    """
    target = module.state_dict()
    narrowed = {k for k, v in target.items() if k in state and state[k].shape != v.shape}
    module.load_state_dict({k: v if k in narrowed else state.get(k, v) for k, v in target.items()})
    for key in sorted(narrowed):  # after every other weight: liveness reads the linears
        module.state_dict()[key].copy_(_widened_radial_weight(module, key, state[key]))


def _widened_radial_weight(fresh: torch.nn.Module, key: str, narrow: torch.Tensor) -> torch.Tensor:
    """The full last radial-MLP layer [hidden, all columns] of a fused interaction whose layer
    computes only its live paths' columns: those columns in place, zeros for the dead ones
    (which feed only paths the block's ``linear`` reads with zero weights, so the model is the
    same function).

    Raises:
        ModelFileError: ``key`` is not such a layer, or its columns are not the live ones.
    """
    from macelerate.runtime.dead_blocks import interaction_liveness, live_weight_columns

    match = _RADIAL_LAST_LAYER.match(key)
    block: Any = fresh.get_submodule(f"{match.group(1) or ''}interactions.{match.group(2)}") if (
        match) else None  # fmt: skip
    liveness = None if block is None else interaction_liveness(block)
    full = fresh.state_dict()[key]
    columns = [] if liveness is None else live_weight_columns(block.conv_tp, liveness.live_paths)
    if liveness is None or narrow.shape != (full.shape[0], len(columns)):
        raise ModelFileError(
            f"weight {key!r} has shape {tuple(narrow.shape)}, not the model's "
            f"{tuple(full.shape)}, and is not a radial layer narrowed to its live paths: "
            "rebuild the model from its file"
        )
    widened = torch.zeros_like(full)
    widened[:, columns] = narrow.to(full.dtype)
    return widened


_RADIAL_LAST_LAYER = re.compile(r"^(.*\.)?interactions\.(\d+)\.conv_tp_weights\.layer\d+\.weight$")
