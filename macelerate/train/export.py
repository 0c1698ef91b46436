"""Fused training copies and their export in mace-torch's unfused layout.

Training runs on a copy with :func:`macelerate.runtime.fused_conv.fuse_message_passing` applied
(the fused convolution supports double backward). Its state dict holds ``coefficients_*`` buffers of
:class:`FusedEdgeTensorProduct` instead of e3nn's tensor-product constants; export drops them and
loads the weights into an unfused copy, whose e3nn constants are unchanged. The exported module is
what mace-torch files and macelerate checkpoints (``describe_mace_model``) hold.
"""

from __future__ import annotations

import copy
import re

import torch

from macelerate._mace import quiet_model_construction
from macelerate.compress.source import load_unfused_state
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct, fuse_message_passing

_COEFFICIENT_KEY = re.compile(r".*\.conv_tp\.coefficients_\d+$")


def fuse_all(model: torch.nn.Module) -> int:
    """Apply :func:`fuse_message_passing` to every submodule with ``interactions`` (in place)."""
    hosts = [
        m
        for m in model.modules()
        if isinstance(getattr(m, "interactions", None), torch.nn.ModuleList)
    ]
    return sum(fuse_message_passing(host) for host in hosts)


def is_fused(model: torch.nn.Module) -> bool:
    """True if any interaction of ``model`` runs :class:`FusedEdgeTensorProduct`."""
    return any(isinstance(m, FusedEdgeTensorProduct) for m in model.modules())


def unfused_template(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` in mace-torch's unfused layout, to load trained weights into.

    A fused plain mace-torch model (e.g. ``Potential.model``) is rebuilt from its description.
    """
    if not is_fused(model):
        with quiet_model_construction():
            return copy.deepcopy(model)
    from macelerate.mace.config import build_mace_model, describe_mace_model

    template = build_mace_model(describe_mace_model(model))
    load_unfused_state(template, unfused_state_dict(model, template))
    return template


def unfused_state_dict(
    trained: torch.nn.Module, template: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """``trained``'s state in ``template``'s layout: fused coefficients dropped, the e3nn
    tensor products' constant buffers taken from ``template``. Radial layers the runtime
    narrowed to their live columns stay narrow: :func:`load_unfused_state` widens them.

    Raises:
        KeyError: the two modules differ beyond the fused convolutions.
    """
    state = {k: v for k, v in trained.state_dict().items() if not _COEFFICIENT_KEY.match(k)}
    target = template.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if unexpected or any(".conv_tp." not in k for k in missing):
        raise KeyError(
            f"trained weights do not fit the unfused model: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    return {k: state.get(k, target[k]) for k in target}


def load_trained_weights(template: torch.nn.Module, trained: torch.nn.Module) -> torch.nn.Module:
    """Load ``trained``'s weights into ``template`` (in place; the caller owns it) -> eval mode.

    ``template`` is an unfused copy (:func:`unfused_template`); ``trained`` may be fused.
    """
    load_unfused_state(template, unfused_state_dict(trained, template))
    return template.eval()
