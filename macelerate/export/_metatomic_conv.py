"""macelerate's exact kernels in a form TorchScript compiles, for metatomic exports: the fused
convolution and the sparse-polynomial symmetric contraction.

:class:`~macelerate.runtime.fused_conv.FusedEdgeTensorProduct` sums each receiver's messages
before the Clebsch-Gordan contraction, in a padded [receiver, neighbour slot] layout, with no
[n_edges, channels x (2l+1)] tensor; its layout is built and cached by Python code.
:class:`ScriptableFusedConv` computes the same sums from the same probed coefficients, building
the slot layout from ``edge_index`` with tensor operations in every call (an engine hands a new
neighbour list each step). mace-torch's interaction blocks call it through their
``conv_fusion`` branch: ``conv_tp(node_feats, edge_attrs, tp_weights, edge_index)`` returns the
summed message. Results equal e3nn's to floating-point rounding; paths whose output the block's
``linear`` reads with zero weights are not computed (their block is zero, as e3nn's would be
after the linear).

:class:`ScriptableSymmetricContraction` evaluates mace's product basis as the runtime's sparse
polynomial (:mod:`macelerate.runtime.symmetric_contraction`): only the monomials the couplings
use, with per-element tables computed once from the frozen weights; autograd gives the forces.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

# ruff: noqa: UP006, UP035

from typing import Any, Dict, List

import torch

from macelerate.runtime.dead_blocks import interaction_liveness
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct, supports_fusion
from macelerate.runtime.symmetric_contraction import (
    FastSymmetricContraction,
    supports_fast_contraction,
)


class _Coefficients(torch.nn.Module):
    """One path's Clebsch-Gordan coefficients [d1, d2, d_out] (a buffer that follows ``.to``)."""

    values: torch.Tensor

    def __init__(self, values: torch.Tensor):
        super().__init__()
        self.register_buffer("values", values.detach().clone())

    def forward(self) -> torch.Tensor:
        return self.values


class ScriptableFusedConv(torch.nn.Module):
    """``(node_feats [n, irreps_in1], edge_attrs [E, irreps_in2], tp_weights [E, weight_numel],
    edge_index [2, E]) -> [n, irreps_out]``: the message summed at each receiver
    (``edge_index[1]``), as the e3nn convolution followed by mace's scatter sum."""

    def __init__(self, fused: FusedEdgeTensorProduct):
        super().__init__()
        self.coefficients = torch.nn.ModuleList(
            [_Coefficients(getattr(fused, f"coefficients_{i}")) for i in range(len(fused.paths))]
        )
        # per path: mul, d1, d2, i_in1, i_in2, weight offset, i_out, live, has diagonal scale
        self.paths: List[List[int]] = [
            [*path, int(live), int(scale is not None)]
            for path, live, scale in zip(fused.paths, fused.live_paths, fused.diagonal_scale)
        ]
        self.scales: List[float] = [0.0 if s is None else float(s) for s in fused.diagonal_scale]
        self.in1_sizes: List[int] = [m.dim for m in fused.irreps_in1]
        self.in2_sizes: List[int] = [m.dim for m in fused.irreps_in2]
        self.weight_sizes: List[int] = [path[0] for path in fused.paths]
        self.out_dims: List[int] = [m.dim for m in fused.irreps_out]
        self.weight_numel = int(sum(path[0] for path in fused.paths))

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
        counts = torch.bincount(receivers, minlength=n_nodes)
        k = int(counts.max())
        order = torch.argsort(receivers, stable=True)
        ordered = receivers.index_select(0, order)
        starts = torch.cumsum(counts, 0) - counts
        slot = torch.arange(n_edges, device=receivers.device) - starts.index_select(0, ordered)
        edge_of_slot = torch.full((n_nodes * k,), n_edges, dtype=torch.long, device=order.device)
        edge_of_slot = edge_of_slot.index_put((ordered * k + slot,), order)  # padding: n_edges
        padded_senders = torch.cat([senders, senders.new_zeros(1)]).index_select(0, edge_of_slot)
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
                w_path = w_blocks[index]  # [n, K, u]
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
            block.conv_tp = ScriptableFusedConv(FusedEdgeTensorProduct(conv, live_paths=live))
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


class _Monomials(torch.nn.Module):
    """One output irrep's frozen polynomial: per-element tables and monomial index lists."""

    tables: torch.Tensor  # [n_elements, channels, m, n_monomials]

    def __init__(self, contraction: Any, n_elements: int):
        super().__init__()
        with torch.no_grad():
            tables = contraction.tables(torch.arange(n_elements))
        self.register_buffer("tables", tables.detach().clone())
        self.orders = torch.nn.ModuleList(
            [
                _Coefficients(getattr(contraction, f"monomials_{nu}"))
                for nu in range(1, contraction.correlation + 1)
            ]
        )
        self.dim_out = int(contraction.dim_out)

    def forward(self, x: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        """``x`` [b, c, i_live], ``elements`` [b] -> [b, c * m], channel-major."""
        terms: List[torch.Tensor] = []
        for order in self.orders:
            index = order()  # [n_monomials of this order, nu]
            term = x.index_select(2, index[:, 0])
            for position in range(1, index.shape[1]):
                term = term * x.index_select(2, index[:, position])
            terms.append(term)
        monomials = torch.cat(terms, dim=2)  # [b, c, n_monomials]
        n_nodes, channels = x.shape[0], x.shape[1]
        out = x.new_zeros((n_nodes, channels, self.dim_out))
        for element in range(self.tables.shape[0]):
            nodes = (elements == element).nonzero().squeeze(1)
            if nodes.numel() > 0:
                table = self.tables[element].to(x.dtype)  # [c, m, n_monomials]
                values = torch.einsum("bcn,cmn->bcm", [monomials.index_select(0, nodes), table])
                out = out.index_copy(0, nodes, values)
        return out.reshape(n_nodes, channels * self.dim_out)


class ScriptableSymmetricContraction(torch.nn.Module):
    """mace-torch's ``SymmetricContraction`` with frozen weights as a sparse polynomial:
    ``(x [b, c, i], node_attrs [b, n_elements] one-hot) -> [b, sum_L c * (2L + 1)]``, only the
    monomials the couplings use, per-element tables computed once (equal to mace-torch's
    result to floating-point rounding, as macelerate's runtime)."""

    live: torch.Tensor

    def __init__(self, source: Any, live_components: Any = None):
        super().__init__()
        fast = FastSymmetricContraction(source, live_components=live_components)
        n_elements = int(source.contractions[0].weights_max.shape[0])
        self.register_buffer("live", fast.live.clone())
        first: Any = fast.contractions[0]
        self.n_components = int(first.n_components)
        self.contractions = torch.nn.ModuleList(
            [_Monomials(contraction, n_elements) for contraction in fast.contractions]
        )

    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        if self.live.shape[0] != self.n_components:
            x = x.index_select(2, self.live)
        elements = node_attrs.argmax(dim=1)
        pieces: List[torch.Tensor] = []
        for contraction in self.contractions:
            pieces.append(contraction(x, elements))
        return torch.cat(pieces, dim=1)
