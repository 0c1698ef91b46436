"""The plain mace-torch model pruning reads: unfused, single-head, of a supported layout."""

from __future__ import annotations

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
    state = {
        key: source[key] if key in source and source[key].shape == value.shape else value
        for key, value in fresh.state_dict().items()
    }
    fresh.load_state_dict(state)
    return fresh.eval()
