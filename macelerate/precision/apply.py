"""Map a :class:`PrecisionPolicy` onto the blocks of a mace-torch model.

:func:`wrap_blocks` replaces each named block of a model the caller owns by a
:class:`~macelerate.precision.islands.PrecisionIsland`; :func:`strip_islands` undoes it.
:func:`macelerate.precision.apply_precision` (in ``transform.py``) is the public, non-mutating
``potential -> (new potential, report)`` transform built on these.

Which block gets which policy field (mace-torch ``MACE``/``ScaleShiftMACE``):

====================================  ===================  ===============================
block                                  compute dtype        storage
====================================  ===================  ===============================
``spherical_harmonics``                geometry             -
``radial_embedding``                   radial_basis         -
``node_embedding``                     linear               linear
``interactions.i.linear_up/linear``    linear               linear
``interactions.i.skip_tp``             linear               linear
``interactions.i.conv_tp_weights``     radial_mlp           radial_mlp
``interactions.i.conv_tp``             neighbour_sum        CG tables: cg_tables
``products.i.symmetric_contractions``  cg_tables            weights: sc weights field
``products.i.linear``                  linear               linear
``readouts.i``                         readouts             readouts (output: energy)
``atomic_energies_fn/scale_shift``     energy_accumulation  energy_accumulation
``pair_repulsion_fn``                  energy_accumulation  energy_accumulation
everything else                        activations          activations
====================================  ===================  ===============================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from macelerate._dtypes import dtype_name
from macelerate.precision.islands import PrecisionIsland
from macelerate.precision.policy import PrecisionError, PrecisionPolicy

TOP_LEVEL_ROLES = {
    "spherical_harmonics": "geometry",
    "radial_embedding": "radial_basis",
    "node_embedding": "linear",
    "atomic_energies_fn": "energy_accumulation",
    "scale_shift": "energy_accumulation",
    "pair_repulsion_fn": "energy_accumulation",
}
INTERACTION_ROLES = {
    "linear_up": "linear",
    "linear": "linear",
    "skip_tp": "linear",
    "conv_tp_weights": "radial_mlp",
    "conv_tp": "neighbour_sum",
}
PRODUCT_ROLES = {"symmetric_contractions": "cg_tables", "linear": "linear"}
ENERGY_ROLES = ("energy_accumulation", "readouts")


@dataclass(frozen=True)
class BlockPrecision:
    """How one block of the model runs (one row of a precision report)."""

    path: str
    role: str
    compute: str
    parameters: str
    buffers: str
    output: str
    n_parameters: int


def _island(module: torch.nn.Module, role: str, policy: PrecisionPolicy) -> PrecisionIsland:
    compute = policy.dtype(role)
    parameters = buffers = compute
    if role == "neighbour_sum":
        buffers = policy.dtype("cg_tables")
    if role == "cg_tables":
        parameters = policy.dtype("symmetric_contraction_weights")
    output = policy.dtype("energy_accumulation" if role in ENERGY_ROLES else "activations")
    return PrecisionIsland(
        module,
        role=role,
        compute_dtype=compute,
        output_dtype=output,
        parameter_dtype=parameters,
        buffer_dtype=buffers,
    )


def _targets(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, str, str]]:
    """(parent, attribute, dotted path, role) of every block the policy names."""
    targets = []
    for name, role in TOP_LEVEL_ROLES.items():
        if isinstance(getattr(model, name, None), torch.nn.Module):
            targets.append((model, name, name, role))
    for group, roles in (("interactions", INTERACTION_ROLES), ("products", PRODUCT_ROLES)):
        for index, block in enumerate(getattr(model, group, [])):
            for name, role in roles.items():
                if isinstance(getattr(block, name, None), torch.nn.Module):
                    targets.append((block, name, f"{group}.{index}.{name}", role))
    readouts: Any = getattr(model, "readouts", [])  # mace-torch ModuleList
    for index in range(len(readouts)):
        targets.append((readouts, str(index), f"readouts.{index}", "readouts"))
    return targets


def wrap_blocks(model: torch.nn.Module, policy: PrecisionPolicy) -> list[BlockPrecision]:
    """Put every named block of ``model`` (owned by the caller, changed in place) in an island.

    The rest of the model is cast to ``policy.activations``.

    Raises:
        PrecisionError: TorchScript exports, or a model with no blocks the policy recognises.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise PrecisionError(
            "precision policies need an eager mace-torch model, not a TorchScript export; load "
            "the .model pickle or a macelerate checkpoint (TorchScript supports dtype= only)"
        )
    if any(isinstance(m, PrecisionIsland) for m in model.modules()):
        raise PrecisionError("model already has a precision policy; strip_islands() it first")
    targets = _targets(model)
    if not any(role == "linear" for *_, role in targets):
        raise PrecisionError(
            f"{type(model).__name__} has none of the blocks of a mace-torch MACE model "
            "(interactions, products, readouts); precision policies support MACE/ScaleShiftMACE"
        )
    model.to(policy.dtype("activations"))
    rows = []
    for parent, attribute, path, role in targets:
        island = _island(getattr(parent, attribute), role, policy)
        parent.add_module(attribute, island)  # replaces the child (ModuleList indices too)
        rows.append(
            BlockPrecision(
                path=path,
                role=role,
                compute=dtype_name(island.compute_dtype),
                parameters=dtype_name(island.parameter_dtype),
                buffers=dtype_name(island.buffer_dtype),
                output=dtype_name(island.output_dtype),
                n_parameters=sum(p.numel() for p in island.parameters()),
            )
        )
    return rows


def strip_islands(model: torch.nn.Module, *, dtype: torch.dtype) -> torch.nn.Module:
    """Replace every island of ``model`` (in place) by its module cast to ``dtype``.

    Raises:
        PrecisionError: an island stores weights in half precision (stripping cannot restore
            the rounded bits; load the model again instead).
    """
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, PrecisionIsland):
                continue
            if child.parameter_dtype in (torch.float16, torch.bfloat16) and any(
                True for _ in child.module.parameters()
            ):
                raise PrecisionError(
                    f"block {name} holds {child.parameter_dtype} weights; the full-precision "
                    "weights are gone: load the model again and apply the new policy to it"
                )
            setattr(module, name, child.unwrap(dtype))
    return model.to(dtype)


def check_device_supports(policy: PrecisionPolicy, device: torch.device | str) -> None:
    """Raise :class:`PrecisionError` if ``device`` cannot compute in a dtype the policy uses."""
    device = torch.device(device)
    from macelerate.precision.policy import dtype_fields

    for dtype in sorted({policy.dtype(name) for name in dtype_fields()}, key=str):
        if device.type == "cuda" and dtype == torch.bfloat16:
            if not torch.cuda.is_bf16_supported():
                raise PrecisionError(
                    f"{torch.cuda.get_device_name(device)} has no bfloat16 support; use "
                    "precision='fp16-linear' or 'fp32'"
                )
        try:
            probe = torch.ones((2, 2), dtype=dtype, device=device)
            (probe @ probe).sum().item()
        except (RuntimeError, TypeError) as error:
            raise PrecisionError(
                f"device {device} cannot compute in {dtype} ({error}); choose a policy without "
                f"{dtype_name(dtype)} for this device"
            ) from error
