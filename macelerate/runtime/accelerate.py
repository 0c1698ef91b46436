"""Install macelerate's exact kernels into a mace-torch model the caller owns.

Three replacements, each exact (results equal mace-torch's to floating-point rounding):

* ``interactions.i.conv_tp``: the fused edge tensor product + neighbour sum
  (:mod:`macelerate.runtime.fused_conv`);
* ``products.i.symmetric_contractions``: per-element polynomial tables evaluated with batched
  matrix products (:mod:`macelerate.runtime.symmetric_contraction`);
* dead blocks (:mod:`macelerate.runtime.dead_blocks`): convolution paths, radial-MLP columns and
  product-basis components that only ever meet exactly-zero weights are not computed.

:func:`accelerate_in_place` changes the model it is given; callers (the ``fuse`` transform, the
training loop) apply it to their own copy, never to a user's module.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

from macelerate._mace import quiet_model_construction
from macelerate.runtime.dead_blocks import (
    interaction_liveness,
    live_linear_instructions,
    live_weight_columns,
)
from macelerate.runtime.fused_conv import (
    FUSABLE_BLOCKS,
    FusedEdgeTensorProduct,
    supports_fusion,
)
from macelerate.runtime.interaction import use_slot_forward
from macelerate.runtime.neighbour_layout import LayoutCache
from macelerate.runtime.symmetric_contraction import (
    FastSymmetricContraction,
    supports_fast_contraction,
)


@dataclass(frozen=True)
class RuntimeOptions:
    """Which exact kernels to install.

    Attributes:
        fuse_convolution: fused edge tensor product + neighbour sum.
        fast_products: table-based symmetric contraction.
        skip_dead_blocks: skip work that only meets exactly-zero weights (changes the layout of
            the radial MLPs: for inference only, not for training copies that are exported).
        slot_layout: run fused interaction blocks with their radial MLPs in the neighbour-slot
            layout (:mod:`macelerate.runtime.interaction`).
    """

    fuse_convolution: bool = True
    fast_products: bool = True
    skip_dead_blocks: bool = True
    slot_layout: bool = True


@dataclass(frozen=True)
class RuntimeReport:
    """What :func:`accelerate_in_place` installed.

    Attributes:
        fused_blocks: interaction blocks whose convolution runs fused.
        fast_products: product blocks running the table-based contraction.
        skipped_paths: per interaction, convolution paths not computed (dead).
        skipped_components: per product block, input components dropped (exactly zero).
        skipped_radial_columns: per interaction, radial-MLP output columns not computed.
    """

    fused_blocks: int = 0
    fast_products: int = 0
    skipped_paths: tuple[int, ...] = field(default_factory=tuple)
    skipped_components: tuple[int, ...] = field(default_factory=tuple)
    skipped_radial_columns: tuple[int, ...] = field(default_factory=tuple)


def slice_radial_mlp(mlp: Any, columns: list[int]) -> torch.nn.Module | None:
    """A copy of an e3nn ``FullyConnectedNet`` computing only output ``columns`` (else None)."""
    layers = [m for name, m in mlp.named_children() if name.startswith("layer")]
    if not layers or not hasattr(layers[-1], "weight") or not hasattr(layers[-1], "h_out"):
        return None
    with quiet_model_construction():
        sliced = copy.deepcopy(mlp)
    last: Any = [m for name, m in sliced.named_children() if name.startswith("layer")][-1]
    index = torch.as_tensor(columns, dtype=torch.long, device=last.weight.device)
    last.weight = torch.nn.Parameter(
        last.weight.detach().index_select(1, index), requires_grad=last.weight.requires_grad
    )
    last.h_out = len(columns)
    if hasattr(sliced, "hs"):
        sliced.hs = [*sliced.hs[:-1], len(columns)]
    return sliced


def _fuse_block(
    block: Any, layouts: LayoutCache, skip_dead: bool, slot_layout: bool
) -> tuple[bool, int, int, tuple[int, ...] | None]:
    """Fuse one interaction block: (fused, skipped paths, skipped columns, live components)."""
    tp = getattr(block, "conv_tp", None)
    if isinstance(tp, FusedEdgeTensorProduct):
        tp.layout_cache = layouts
        return True, 0, 0, None
    if type(block).__name__ not in FUSABLE_BLOCKS or tp is None:
        return False, 0, 0, None
    if hasattr(block, "conv_fusion") or not supports_fusion(tp):
        return False, 0, 0, None
    liveness = interaction_liveness(block) if skip_dead else None
    live_paths = liveness.live_paths if liveness is not None else None
    compact = False
    skipped_columns = 0
    if live_paths is not None and not all(live_paths):
        columns = live_weight_columns(tp, live_paths)
        sliced = slice_radial_mlp(block.conv_tp_weights, columns) if columns else None
        if sliced is not None:
            skipped_columns = tp.weight_numel - len(columns)
            block.conv_tp_weights = sliced
            compact = True
    fused = FusedEdgeTensorProduct(tp, live_paths=live_paths, compact_weights=compact)
    fused.layout_cache = layouts
    block.conv_tp = fused
    block.conv_fusion = "macelerate"
    if slot_layout:
        use_slot_forward(block, live_linear_instructions(block.linear) if skip_dead else None)
    skipped_paths = sum(not live for live in live_paths) if live_paths else 0
    components = liveness.live_components if liveness is not None else None
    return True, skipped_paths, skipped_columns, components


def accelerate_in_place(
    model: torch.nn.Module, options: RuntimeOptions | None = None
) -> RuntimeReport:
    """Install the exact kernels into ``model`` (changed in place; the caller owns it).

    Works on mace-torch ``MACE``/``ScaleShiftMACE`` models and on anything that holds one
    (a student's ``backbone``). TorchScript exports and unsupported blocks are left unchanged.
    """
    options = options or RuntimeOptions()
    if isinstance(model, torch.jit.ScriptModule):
        return RuntimeReport()
    hosts: list[Any] = [m for m in model.modules() if isinstance(getattr(m, "interactions", None),
                                                      torch.nn.ModuleList)]  # fmt: skip
    fused = fast = 0
    skipped_paths: list[int] = []
    skipped_components: list[int] = []
    skipped_columns: list[int] = []
    for host in hosts:
        layouts = LayoutCache()  # one neighbour layout per graph, shared by the host's blocks
        live: list[tuple[int, ...] | None] = []
        for block in host.interactions:
            if not options.fuse_convolution:
                live.append(None)
                continue
            did, paths, columns, components = _fuse_block(
                block, layouts, options.skip_dead_blocks, options.slot_layout
            )
            fused += did
            skipped_paths.append(paths)
            skipped_columns.append(columns)
            live.append(components)
        if not options.fast_products:
            continue
        for index, product in enumerate(getattr(host, "products", [])):
            source = getattr(product, "symmetric_contractions", None)
            if source is None or not supports_fast_contraction(source):
                continue
            components = live[index] if index < len(live) else None
            components = components or None  # nothing live: keep every component
            n_in = int(source.contractions[0].U_matrix_1.shape[-2])
            product.symmetric_contractions = FastSymmetricContraction(
                source, live_components=components
            )
            fast += 1
            skipped_components.append(n_in - len(components) if components else 0)
    return RuntimeReport(
        fused_blocks=fused,
        fast_products=fast,
        skipped_paths=tuple(skipped_paths),
        skipped_components=tuple(skipped_components),
        skipped_radial_columns=tuple(skipped_columns),
    )
