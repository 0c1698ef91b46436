"""Mixed-precision training: autocast with float32 master weights and float32 islands.

The trained copy keeps float32 parameters (the masters: AdamW updates them in float32). Inside
:meth:`MixedPrecision.autocast`, ``torch.autocast`` runs the matrix products (equivariant
linears, radial MLPs, dense heads) in bfloat16 or float16; the blocks whose precision decides the
energy's accuracy stay in float32 (*islands*: autocast off, half-precision inputs cast up):

- ``spherical_harmonics`` and ``radial_embedding`` (geometry),
- ``interactions.K.conv_tp`` (the Clebsch–Gordan convolution and its sum over neighbours),
- ``products.K.symmetric_contractions`` (the CG tables of the product basis),
- ``readouts.K``, ``atomic_energies_fn``, ``scale_shift``, ``pair_repulsion_fn`` (energies and
  their sums over atoms).

float16 also scales the loss (``torch.amp.GradScaler``): a step whose scaled gradients overflow
is skipped and the scale lowered; such steps are counted apart from NaN/inf batches. Validation
and the returned model run in float32 without autocast, so their errors are the model's own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch

AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}

ISLAND_PATTERN = re.compile(
    r"(^|\.)(spherical_harmonics|radial_embedding|atomic_energies_fn|scale_shift|"
    r"pair_repulsion_fn|interactions\.\d+\.conv_tp|products\.\d+\.symmetric_contractions|"
    r"readouts\.\d+)$"
)
"""Module names (``named_modules``) that compute in float32 under autocast."""


def _to_float32(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    if type(value) in (tuple, list):  # not NamedTuples (NeighbourLayout): passed unchanged
        return type(value)(_to_float32(item) for item in value)
    if type(value) is dict:
        return {key: _to_float32(item) for key, item in value.items()}
    return value


def _island_forward(forward: Callable[..., Any], device_type: str) -> Callable[..., Any]:
    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type, enabled=False):
            return forward(*_to_float32(args), **_to_float32(kwargs))

    return run


def install_float32_islands(model: torch.nn.Module, *, device_type: str) -> list[str]:
    """Make the :data:`ISLAND_PATTERN` blocks of ``model`` (a training copy, changed in place)
    compute in float32 under autocast -> their names. Parameter names do not change."""
    names = []
    for name, module in model.named_modules():
        if name and ISLAND_PATTERN.search(name) and "forward" not in vars(module):
            module.forward = _island_forward(module.forward, device_type)
            names.append(name)
    return names


class MixedPrecision:
    """Autocast, float32 islands and (float16) loss scaling of one training run.

    Args:
        model: the training copy (float32; its island blocks are changed in place).
        dtype: ``"bfloat16"`` or ``"float16"``.
        device: the device the model trains on.
    """

    def __init__(self, model: torch.nn.Module, dtype: str, device: torch.device) -> None:
        self.dtype = AUTOCAST_DTYPES[dtype]
        self.device_type = device.type
        self.islands = install_float32_islands(model, device_type=self.device_type)
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)
        self.overflow_steps = 0

    @property
    def scales_loss(self) -> bool:
        return self.scaler.is_enabled()

    def autocast(self) -> AbstractContextManager:
        """The context of a training forward pass (and its loss)."""
        return torch.autocast(self.device_type, dtype=self.dtype)

    def state_dict(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict(), "overflow_steps": self.overflow_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.overflow_steps = int(state.get("overflow_steps", 0))
