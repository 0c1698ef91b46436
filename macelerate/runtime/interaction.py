"""mace-torch interaction blocks run with their per-edge work in the slot layout.

mace-torch's ``RealAgnostic(Residual)InteractionBlock.forward`` computes the radial MLP for every
edge, multiplies by the envelope and hands the [n_edges, weight_numel] weights to the convolution,
which (fused, :mod:`macelerate.runtime.fused_conv`) then copies them into its receiver-major
[receiver, slot] layout, and copies their gradient back in the backward pass. Here the block's own
forward is replaced, per instance, by :func:`slot_forward`: the narrow per-edge inputs (radial
features [n_edges, n_basis], envelope, spherical harmonics) are gathered into the slot layout
instead and the radial MLP runs there, so the wide weight tensor is never copied. The block keeps
its class and submodules (names, state dict, precision islands and ``describe`` are unchanged);
the arithmetic is mace-torch's, term by term, in another memory layout.

Padding slots get zero radial features (an e3nn MLP without biases maps them to zero; tabulated
MLPs treat length 0 as padding) and zero spherical harmonics, so they add nothing to values or
gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch

from macelerate.mace.contract import INTERACTION_CLASSES, SELECTOR_INTERACTION_CLASSES
from macelerate.runtime.dead_blocks import linear_live_forward
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct
from macelerate.runtime.tabulated_radial import TabulatedRadialMLP, linear_layer_weight

MAX_PADDING = 1.25
"""Slots per edge above which a graph runs mace-torch's block forward instead (see below)."""
SLOT_BLOCKS = INTERACTION_CLASSES
"""Blocks whose forward :func:`slot_forward` reproduces; those in
:data:`~macelerate.mace.contract.SELECTOR_INTERACTION_CLASSES` apply ``skip_tp`` after ``linear``
and return no residual, the others return ``skip_tp`` of the input as the residual."""


def slot_forward(
    block: Any,
    node_attrs: torch.Tensor,
    node_feats: torch.Tensor,
    edge_attrs: torch.Tensor,
    edge_feats: torch.Tensor,
    edge_index: torch.Tensor,
    cutoff: torch.Tensor | None = None,
    lammps_class: Any = None,
    lammps_natoms: tuple[int, int] = (0, 0),
    first_layer: bool = False,
    live_linear: tuple[int, ...] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``block.forward`` with the per-edge work in the slot layout (same inputs and outputs).

    With ``live_linear`` (instruction indices, :func:`~macelerate.runtime.dead_blocks.
    live_linear_instructions`), the block's ``linear`` computes only those instructions: its
    other weight blocks are exactly zero (dead paths), so their products are skipped.

    LAMMPS ghost-atom runs, graphs without edges, and graphs whose slot layout is mostly padding
    (uneven neighbour counts, as in molecular clusters: more than :data:`MAX_PADDING` slots per
    edge, where running the radial MLP on the padded slots would cost more than the copy it
    saves) go to mace-torch's own forward, which still uses the fused convolution.
    """
    fused_conv: Any = getattr(block.conv_tp, "module", block.conv_tp)
    n_edges = edge_index.shape[1]
    layout = fused_conv.layout_cache.get(edge_index, node_feats.shape[0]) if n_edges > 0 else None
    if (
        lammps_class is not None
        or layout is None
        or layout.n_nodes * layout.k > MAX_PADDING * n_edges
    ):
        return type(block).forward(
            block, node_attrs, node_feats, edge_attrs, edge_feats, edge_index, cutoff=cutoff,
            lammps_class=lammps_class, lammps_natoms=lammps_natoms, first_layer=first_layer,
        )  # fmt: skip
    residual = type(block).__name__ not in SELECTOR_INTERACTION_CLASSES
    sc = block.skip_tp(node_feats, node_attrs) if residual else None
    node_feats = block.linear_up(node_feats)
    n, k = layout.n_nodes, layout.k
    folding = _species_folding(block, fused_conv, node_attrs, node_feats, first_layer)
    weights = radial_weights(
        block.conv_tp_weights,
        layout.gather(edge_feats, zero_padding=True).view(n * k, -1),
        None if cutoff is None else layout.gather(cutoff, zero_padding=True).view(n * k, -1),
        widths=fused_conv.weight_widths(),
        groups=None if folding is None else folding[0].index_select(0, layout.sender_of_slot),
        group_scales=None if folding is None else folding[1],
    )
    y_slots = layout.gather(edge_attrs, zero_padding=True)
    w_slots = tuple(w.view(n, k, -1) for w in weights)  # per path: no [n, k, weight_numel] cat
    if folding is None:
        message = block.conv_tp(node_feats, y_slots, w_slots, layout)
    else:
        message = block.conv_tp(node_feats, y_slots, w_slots, layout, senders_folded=True)
    if live_linear is not None and hasattr(block.linear, "instructions"):  # not wrapped
        message = linear_live_forward(block.linear, message, live_linear)
    else:
        message = block.linear(message)
    message = message / block.avg_num_neighbors
    if not residual:
        message = block.skip_tp(message, node_attrs)
    return block.reshape(message), sc


def _species_folding(
    block: Any,
    fused_conv: FusedEdgeTensorProduct,
    node_attrs: torch.Tensor,
    node_feats: torch.Tensor,
    first_layer: bool,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(species [n_nodes], scales [n_species, weight columns])`` when the sender features can
    be folded into a tabulated radial table, else None.

    In the first interaction the node features are a function of the element alone (mace-torch
    embeds the one-hot ``node_attrs``), so each path's per-edge product ``w(r) * h[sender]`` is
    a function of the length and the sender's element: one table per element
    (:meth:`~macelerate.runtime.tabulated_radial.TabulatedRadialMLP.output_blocks`) replaces the
    sender gather and the products, forward and backward. Only for tabulated radial MLPs, live
    paths with scalar inputs, and features without gradients (inference: nothing in the first
    layer depends on positions). The features are checked to be the same for every atom of an
    element; when they are not (a model with other per-atom inputs), nothing is folded.
    """
    if not first_layer or node_feats.requires_grad:
        return None
    if not isinstance(block.conv_tp_weights, TabulatedRadialMLP):
        return None
    if not fused_conv.folds_senders:
        return None
    species = node_attrs.argmax(dim=1)  # [n_nodes]
    per_species = node_feats.new_zeros((node_attrs.shape[1], node_feats.shape[1]))
    per_species.index_copy_(0, species, node_feats)
    if not torch.equal(per_species.index_select(0, species), node_feats):
        return None  # features that are not a function of the element (extra node inputs)
    return species, per_species.index_select(1, fused_conv.scalar_column_index)


def radial_weights(
    mlp: torch.nn.Module,
    features: torch.Tensor,
    cutoff: torch.Tensor | None,
    widths: Sequence[int] | None = None,
    groups: torch.Tensor | None = None,
    group_scales: torch.Tensor | None = None,
) -> Any:
    """``mlp(features) * cutoff``: [n, weight_numel] tensor-product weights.

    The radial MLP's last layer is linear and bias-free (e3nn ``FullyConnectedNet``), so the
    envelope (and a smooth cap's weight) is applied to its [n, hidden] input instead of its
    [n, weight_numel] output: the same value to rounding, with 2-8x fewer products in the forward
    and backward passes (GO-MACE: 64 hidden features against 512 weights). The tabulated lever
    folds it into its four interpolation weights per row. Other modules get the product of
    their output.

    With ``widths`` (one per tensor-product path, summing to the output width) the weights come
    as a tuple of per-path column blocks [n, width], each computed on its own, so the backward
    pass never concatenates their gradients into an [n, weight_numel] tensor.

    Args:
        mlp: the block's ``conv_tp_weights``.
        features: [n, n_basis] radial features (edge lengths [n, 1] for a tabulated MLP).
        cutoff: [n, 1] envelope per row, or None.
        widths: columns per path, or None for one [n, weight_numel] tensor.
        groups, group_scales: a tabulated MLP's per-row group and column scales
            (:meth:`TabulatedRadialMLP.forward`); other MLPs refuse them.
    """
    if isinstance(mlp, TabulatedRadialMLP):
        return mlp(features, scale=cutoff, widths=widths, groups=groups,
                   group_scales=group_scales)  # fmt: skip
    if group_scales is not None:
        raise ValueError("group scales need a tabulated radial MLP")
    layers = list(mlp.children()) if isinstance(mlp, torch.nn.Sequential) else []
    last: Any = layers[-1] if layers else None
    if last is None or getattr(last, "act", "missing") is not None or not hasattr(last, "h_in"):
        out = mlp(features) if cutoff is None else mlp(features) * cutoff  # not an e3nn MLP
        return out if widths is None else out.split(list(widths), dim=1)
    hidden = features
    for layer in layers[:-1]:
        hidden = layer(hidden)
    if cutoff is not None:
        hidden = hidden * cutoff
    if widths is None:
        return last(hidden)
    weight = linear_layer_weight(last)  # [hidden, weight_numel]
    return tuple(hidden @ block for block in weight.split(list(widths), dim=1))


def use_slot_forward(block: Any, live_linear: tuple[int, ...] | None = None) -> bool:
    """Run ``block`` (changed in place; the caller owns it) with :func:`slot_forward`
    (``live_linear``: see there; only for frozen weights, whose zero blocks stay zero).

    Returns False, changing nothing, for blocks whose convolution is not macelerate's fused one
    or whose class this forward does not reproduce.
    """
    if type(block).__name__ not in SLOT_BLOCKS:
        return False
    conv = getattr(block, "conv_tp", None)
    if not isinstance(getattr(conv, "module", conv), FusedEdgeTensorProduct):
        return False
    block.forward = functools.partial(slot_forward, block, live_linear=live_linear)
    return True
