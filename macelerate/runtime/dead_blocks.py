"""Exactly-zero weight blocks, and the computation they make dead.

A trained MACE can hold whole weight blocks that are exactly zero. Both GO-MACE checkpoints,
for example, map every L > 0 message of their last interaction to zero in its ``linear``. Then:

* the convolution paths that produce those messages are multiplied by zero afterwards (and the
  radial-MLP columns that weight them are never used);
* the product basis that follows receives features whose L > 0 components are exactly zero.

Skipping that work changes no result (not even by rounding: the skipped terms are exact zeros),
so it belongs to the exact runtime. This module finds it by reading the e3nn instruction lists
and the weights; :mod:`macelerate.runtime.accelerate` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from macelerate.mace.contract import INTERACTION_CLASSES, SELECTOR_INTERACTION_CLASSES


@dataclass(frozen=True)
class InteractionLiveness:
    """What one interaction block computes that can be non-zero.

    Attributes:
        live_paths: per convolution instruction, False if its message block only meets zero
            weights in the block's ``linear``.
        live_outputs: per irrep of the block's output (the product basis input), False if it is
            exactly zero for every input.
        live_components: indices ``i`` of the product input's [n, channels, i] components that
            may be non-zero (the components of the live output irreps).
    """

    live_paths: tuple[bool, ...]
    live_outputs: tuple[bool, ...]
    live_components: tuple[int, ...]

    @property
    def all_live(self) -> bool:
        """True if nothing can be skipped."""
        return all(self.live_paths) and all(self.live_outputs)


def _weight_blocks(module: Any, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Split an e3nn module's flat ``weight`` into one block per instruction."""
    sizes = [int(torch.Size(shape).numel()) for shape in shapes]
    return list(module.weight.detach().reshape(-1).split(sizes))


def _linear_edges(linear: Any) -> list[tuple[int, int, bool]]:
    """(input irrep, output irrep, has a non-zero weight) per instruction of an e3nn Linear."""
    instructions = linear.instructions
    blocks = _weight_blocks(linear, [ins.path_shape for ins in instructions])
    return [
        (ins.i_in, ins.i_out, bool(block.ne(0).any())) for ins, block in zip(instructions, blocks)
    ]


def _skip_edges(skip_tp: Any) -> list[tuple[int, int, bool]]:
    """(input irrep, output irrep, non-zero) per instruction of mace's element-dependent skip."""
    instructions = skip_tp.instructions
    blocks = _weight_blocks(skip_tp, [ins.path_shape for ins in instructions])
    return [
        (ins.i_in1, ins.i_out, bool(block.ne(0).any())) for ins, block in zip(instructions, blocks)
    ]


def interaction_liveness(block: Any) -> InteractionLiveness | None:
    """Liveness of a mace-torch ``RealAgnostic(Residual)InteractionBlock``; None if unknown.

    The non-residual block applies its element-dependent ``skip_tp`` after ``linear``; that is
    followed too. Linear layers with biases, or blocks of another layout, return None (nothing
    is skipped).
    """
    name = type(block).__name__
    linear, conv = getattr(block, "linear", None), getattr(block, "conv_tp", None)
    if name not in INTERACTION_CLASSES:
        return None
    if linear is None or conv is None:
        return None
    if not hasattr(linear, "instructions") or not hasattr(conv, "instructions"):
        return None
    bias = getattr(linear, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.numel() > 0:
        return None
    edges = _linear_edges(linear)
    live_mid = {i_in for i_in, _, nonzero in edges if nonzero}
    live_out = {i_out for i_in, i_out, nonzero in edges if nonzero}
    if name in SELECTOR_INTERACTION_CLASSES:  # skip_tp after linear
        skip = getattr(block, "skip_tp", None)
        if skip is None or not hasattr(skip, "instructions"):
            return None
        live_out = {o for i, o, nonzero in _skip_edges(skip) if nonzero and i in live_out}
    irreps_out = linear.irreps_out
    live_paths = tuple(ins.i_out in live_mid for ins in conv.instructions)
    live_outputs = tuple(i in live_out for i in range(len(irreps_out)))
    components: list[int] = []
    start = 0
    for index, (_, ir) in enumerate(irreps_out):
        if live_outputs[index]:
            components.extend(range(start, start + ir.dim))
        start += ir.dim
    return InteractionLiveness(live_paths, live_outputs, tuple(components))


def live_weight_columns(conv: Any, live_paths: tuple[bool, ...]) -> list[int]:
    """Columns of the convolution weights (radial-MLP outputs) that feed live paths."""
    columns: list[int] = []
    start = 0
    for ins, live in zip(conv.instructions, live_paths):
        width = int(torch.Size(ins.path_shape).numel())
        if live:
            columns.extend(range(start, start + width))
        start += width
    return columns


def live_linear_instructions(linear: Any) -> tuple[int, ...] | None:
    """Indices of the instructions of an e3nn ``Linear`` with a non-zero weight, or None when
    every instruction is live (or the module is not a bias-free e3nn ``Linear``).

    :func:`linear_live_forward` computes only these; the others add exact zeros.
    """
    if type(linear).__name__ != "Linear" or not hasattr(linear, "instructions"):
        return None
    bias = getattr(linear, "bias", None)
    if isinstance(bias, torch.Tensor) and bias.numel() > 0:
        return None
    weight = getattr(linear, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 1:  # shared, internal weights
        return None
    live = tuple(i for i, (_, _, nonzero) in enumerate(_linear_edges(linear)) if nonzero)
    return None if len(live) == len(linear.instructions) else live


def linear_live_forward(linear: Any, x: torch.Tensor, live: tuple[int, ...]) -> torch.Tensor:
    """``linear(x)`` of an e3nn ``Linear`` computing only the ``live`` instructions.

    The same terms as e3nn's generated code (``path_weight * einsum("uw,zui->zwi")``, summed
    per output in instruction order), without the products of all-zero weight blocks: output
    irreps that only they feed are zeros. Exact (the skipped terms are zeros).

    Args:
        linear: the e3nn ``Linear`` (shared, internal, bias-free weights).
        x: [n, irreps_in.dim] input.
        live: instruction indices (:func:`live_linear_instructions`).

    Returns:
        [n, irreps_out.dim]
    """
    irreps_in, irreps_out = linear.irreps_in, linear.irreps_out
    starts_in = [s.start for s in irreps_in.slices()]
    sizes = [int(torch.Size(ins.path_shape).numel()) for ins in linear.instructions]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    n = x.shape[0]
    outputs: dict[int, torch.Tensor] = {}
    for index in live:
        ins = linear.instructions[index]
        mul_ir_in = irreps_in[ins.i_in]
        features = x.narrow(-1, starts_in[ins.i_in], mul_ir_in.dim)
        features = features.reshape(n, mul_ir_in.mul, mul_ir_in.ir.dim)
        weight = linear.weight.narrow(0, offsets[index], sizes[index]).reshape(ins.path_shape)
        term = ins.path_weight * torch.einsum("uw,zui->zwi", weight, features)
        outputs[ins.i_out] = term if ins.i_out not in outputs else outputs[ins.i_out] + term
    pieces = [
        outputs[i].reshape(n, mul_ir.dim) if i in outputs else x.new_zeros((n, mul_ir.dim))
        for i, mul_ir in enumerate(irreps_out)
        if mul_ir.mul > 0
    ]
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)
