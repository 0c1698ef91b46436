"""macelerate's fused convolution in a form TorchScript compiles, for metatomic exports, and
the assembly of an export's backbone from scriptable kernels.

:class:`~macelerate.runtime.fused_conv.FusedEdgeTensorProduct` sums each receiver's messages
before the Clebsch-Gordan contraction, in a padded [receiver, neighbour slot] layout, with no
[n_edges, channels x (2l+1)] tensor; its layout is built and cached by Python code.
:class:`ScriptableFusedConv` computes the same sums from the same probed coefficients. The
exported module (:mod:`~macelerate.export._metatomic_module`) hands most graphs over already in
the slot layout, padded with far self-edges (:func:`takes_slot_layout` says which models may be
padded), so the convolution gathers nothing: edge attributes and weights are views. Other graphs
are laid out here, with tensor operations, in every call (an engine hands a new neighbour list
each step). mace-torch's interaction blocks call it through their ``conv_fusion`` branch:
``conv_tp(node_feats, edge_attrs, tp_weights, edge_index)`` returns the summed message. Results
equal e3nn's to floating-point rounding; paths whose output the block's ``linear`` reads with
zero weights are not computed (their block is zero, as e3nn's would be after the linear), and
the radial MLP computes only the live paths' columns, as in the runtime.

:func:`fuse_for_export` installs these convolutions and the scriptable symmetric contraction
(:mod:`~macelerate.export._metatomic_contraction`, the runtime's gradient form) in a backbone.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

# ruff: noqa: UP006, UP035, UP045

from typing import Any, Dict, List, Optional

import torch

from macelerate.export._metatomic_buffer import FrozenTensor
from macelerate.export._metatomic_contraction import ScriptableSymmetricContraction
from macelerate.export._metatomic_radial import ScriptableRadialTable
from macelerate.mace.contract import INTERACTION_CLASSES, RADIAL_EMBEDDING_CLASS
from macelerate.runtime.accelerate import slice_radial_mlp
from macelerate.runtime.dead_blocks import interaction_liveness, live_weight_columns
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct, supports_fusion
from macelerate.runtime.symmetric_contraction import supports_fast_contraction


class ScriptableFusedConv(torch.nn.Module):
    """``(node_feats [n, irreps_in1], edge_attrs [E, irreps_in2], tp_weights [E, weight_numel],
    edge_index [2, E]) -> [n, irreps_out]``: the message summed at each receiver
    (``edge_index[1]``), as the e3nn convolution followed by mace's scatter sum."""

    def __init__(self, fused: FusedEdgeTensorProduct):
        super().__init__()
        self.coefficients = torch.nn.ModuleList(
            [FrozenTensor(getattr(fused, f"coefficients_{i}")) for i in range(len(fused.paths))]
        )
        # per path: mul, d1, d2, i_in1, i_in2, weight offset, i_out, live, has diagonal scale
        self.paths: List[List[int]] = [
            [*path, int(live), int(scale is not None)]
            for path, live, scale in zip(fused.paths, fused.live_paths, fused.diagonal_scale)
        ]
        self.scales: List[float] = [0.0 if s is None else float(s) for s in fused.diagonal_scale]
        self.in1_sizes: List[int] = [m.dim for m in fused.irreps_in1]
        self.in2_sizes: List[int] = [m.dim for m in fused.irreps_in2]
        # columns of tp_weights per path: none for dead paths when the radial MLP was sliced to
        # the live paths' columns (compact weights)
        self.weight_sizes: List[int] = list(fused.weight_widths())
        self.out_dims: List[int] = [m.dim for m in fused.irreps_out]
        self.weight_numel = int(sum(self.weight_sizes))

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        tp_weights: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        n_nodes = node_feats.shape[0]
        n_edges = edge_index.shape[1]
        if n_edges == 0:  # every message is zero, still on the autograd graph
            connected = edge_attrs.sum() + tp_weights.sum()
            return node_feats.new_zeros((n_nodes, sum(self.out_dims))) + 0.0 * connected
        senders, receivers = edge_index[0], edge_index[1]
        k = slot_width(receivers, n_nodes)
        if k > 0:  # the graph is already in the slot layout (padded by the exported module)
            padded_senders = senders
            y = edge_attrs.view(n_nodes, k, -1)
            w = tp_weights.view(n_nodes, k, -1)
        else:
            counts = torch.bincount(receivers, minlength=n_nodes)
            k = int(counts.max())
            edge_of_slot = slot_edges(receivers, counts, k)  # padding: n_edges
            padded_senders = torch.cat([senders, senders.new_zeros(1)]).index_select(
                0, edge_of_slot
            )
            y = torch.cat([edge_attrs, edge_attrs.new_zeros((1, edge_attrs.shape[1]))])
            y = y.index_select(0, edge_of_slot).view(n_nodes, k, -1)  # zero at padding slots
            w = torch.cat([tp_weights, tp_weights.new_zeros((1, tp_weights.shape[1]))])
            w = w.index_select(0, edge_of_slot).view(n_nodes, k, -1)
        # split, not narrow: a split's gradient is one concatenation, a narrow's a zero tensor
        # of the whole input per block
        x_blocks = node_feats.split(self.in1_sizes, dim=1)
        y_blocks = y.split(self.in2_sizes, dim=2)
        w_blocks = w.split(self.weight_sizes, dim=2)
        blocks: Dict[int, torch.Tensor] = {}
        for index, path_coefficients in enumerate(self.coefficients):
            coefficients = path_coefficients()  # [d1, d2, d_out]
            mul, d1, d2, i_in1, i_in2, _, i_out, live, diagonal = self.paths[index]
            if live == 1:  # dead paths are not computed
                y_path = y_blocks[i_in2]  # [n, K, d2]
                w_path = w_blocks[index]  # [n, K, u] (empty for dead paths: never read)
                x = x_blocks[i_in1]  # [n, u * d1]
                if d1 == 1:
                    x_slots = x.index_select(0, padded_senders).view(n_nodes, k, mul)
                    summed = torch.bmm(y_path.transpose(1, 2), x_slots * w_path)  # [n, d2, u]
                    if diagonal == 1:
                        block = (summed * self.scales[index]).transpose(1, 2)
                    else:
                        block = torch.einsum("nju,jk->nuk", [summed, coefficients[0]])
                else:
                    x_slots = x.reshape(n_nodes, mul, d1).transpose(1, 2)
                    x_slots = x_slots.index_select(0, padded_senders).view(n_nodes, k, d1, mul)
                    xw = x_slots * w_path.unsqueeze(2)  # [n, K, i, u]
                    left = xw.reshape(n_nodes, k, d1 * mul).transpose(1, 2)  # [n, i*u, K]
                    summed = torch.bmm(left, y_path).view(n_nodes, d1, mul, d2)
                    block = torch.einsum("niuj,ijk->nuk", [summed, coefficients])
                blocks[i_out] = block.reshape(n_nodes, -1)
        out: List[torch.Tensor] = []
        for i, dim in enumerate(self.out_dims):
            if i in blocks:
                out.append(blocks[i])
            else:
                out.append(node_feats.new_zeros((n_nodes, dim)))
        return torch.cat(out, dim=1)


def slot_width(receivers: torch.Tensor, n_nodes: int) -> int:
    """K if ``receivers`` [E] is already the slot layout (``E = n_nodes * K``, receiver ``i``
    at positions ``i * K ... i * K + K - 1``), else 0. Checked on every call, so a graph that is
    not in that layout only costs the check."""
    n_edges = receivers.shape[0]
    if n_nodes == 0 or n_edges == 0 or n_edges % n_nodes != 0:
        return 0
    k = n_edges // n_nodes
    expected = torch.arange(n_nodes, dtype=receivers.dtype, device=receivers.device)
    if torch.equal(receivers.view(n_nodes, k), expected.unsqueeze(1).expand(n_nodes, k)):
        return k
    return 0


def slot_edges(receivers: torch.Tensor, counts: torch.Tensor, k: int) -> torch.Tensor:
    """[n_nodes * k] edge index of every (receiver, slot); ``E`` (one past the last edge) at
    padding slots. ``counts`` [n_nodes]: edges per receiver; ``k``: at least their maximum."""
    n_edges = receivers.shape[0]
    order = torch.argsort(receivers, stable=True)
    ordered = receivers.index_select(0, order)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(n_edges, device=receivers.device) - starts.index_select(0, ordered)
    edge_of_slot = torch.full(
        (counts.shape[0] * k,), n_edges, dtype=torch.long, device=receivers.device
    )
    return edge_of_slot.index_put((ordered * k + slot,), order)


def fuse_for_export(mace: Any) -> int:
    """Give ``mace`` (owned, unfused, frozen) macelerate's exact kernels in scriptable form, in
    place: the fused convolution in every interaction that supports it (dead paths skipped),
    and the sparse-polynomial symmetric contraction in every product (components no live path
    feeds dropped). Returns the number of blocks changed."""
    changed = 0
    interactions = list(getattr(mace, "interactions", []))
    products = list(getattr(mace, "products", []))
    for index, block in enumerate(interactions):
        liveness = interaction_liveness(block)
        conv = getattr(block, "conv_tp", None)
        if conv is not None and supports_fusion(conv) and not hasattr(block, "conv_fusion"):
            live = None if liveness is None else liveness.live_paths
            if live is not None and not any(live):
                live = None  # nothing live: compute every path (all zero after the linear)
            compact = False
            if live is not None and not all(live):  # the radial MLP computes live columns only
                columns = live_weight_columns(conv, live)
                radial = block.conv_tp_weights
                sliced: Optional[torch.nn.Module] = None
                if isinstance(radial, ScriptableRadialTable):  # tabulated: narrow the tables
                    sliced = radial.columns(columns)
                else:
                    sliced = slice_radial_mlp(radial, columns)
                if sliced is not None:
                    block.conv_tp_weights = sliced
                    compact = True
            block.conv_tp = ScriptableFusedConv(
                FusedEdgeTensorProduct(conv, live_paths=live, compact_weights=compact)
            )
            block.conv_fusion = True
            changed += 1
        contraction = getattr(products[index], "symmetric_contractions", None) if (
            index < len(products)) else None  # fmt: skip
        if contraction is not None and supports_fast_contraction(contraction):
            components = None if liveness is None else (liveness.live_components or None)
            products[index].symmetric_contractions = ScriptableSymmetricContraction(
                contraction, components
            )
            changed += 1
    return changed


def takes_slot_layout(mace: Any) -> bool:
    """True if ``mace`` (after :func:`fuse_for_export`) may be handed its edges already in the
    slot layout, padded with edges beyond the cutoff: every interaction is one of
    mace-torch's standard blocks (tensor-product weights times the envelope, zero beyond the
    cutoff with their derivative) with the scriptable fused convolution, the radial embedding
    is mace's own (not a smooth cap, whose neighbour count would see the padding), and nothing
    else reads the edges (no pair repulsion)."""
    interactions = list(getattr(mace, "interactions", []))
    standard = all(
        type(block).__name__ in INTERACTION_CLASSES
        and isinstance(getattr(block, "conv_tp", None), ScriptableFusedConv)
        for block in interactions
    )
    embedding: Any = getattr(mace, "radial_embedding", None)
    if type(embedding).__name__ == "SmoothCapRadialEmbedding":
        embedding = embedding.inner  # its search ignores edges beyond its ceiling + δ
    # mace's own embedding, or the tabulated export's (its tables end in the envelope's zero)
    envelope_only = type(embedding).__name__ in (
        RADIAL_EMBEDDING_CLASS,
        "ScriptableLengthEmbedding",
    )
    return (
        bool(interactions)
        and standard
        and envelope_only
        and not getattr(mace, "pair_repulsion", False)
    )
