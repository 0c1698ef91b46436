"""macelerate's fused convolution in a form TorchScript compiles, for metatomic exports.

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

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

# ruff: noqa: UP006, UP035

from typing import Any, Dict, List

import torch

from macelerate.runtime.dead_blocks import interaction_liveness
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct, supports_fusion


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
        self.in1_offsets: List[int] = _offsets([m.dim for m in fused.irreps_in1])
        self.in1_muls: List[int] = [m.mul for m in fused.irreps_in1]
        self.in1_dims: List[int] = [m.ir.dim for m in fused.irreps_in1]
        self.in2_offsets: List[int] = _offsets([m.dim for m in fused.irreps_in2])
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
        blocks: Dict[int, torch.Tensor] = {}
        for index, path_coefficients in enumerate(self.coefficients):
            coefficients = path_coefficients()  # [d1, d2, d_out]
            mul, d1, d2, i_in1, i_in2, offset, i_out, live, diagonal = self.paths[index]
            if live == 1:  # dead paths are not computed
                y_path = y.narrow(2, self.in2_offsets[i_in2], d2)  # [n, K, d2]
                w_path = w.narrow(2, offset, mul)  # [n, K, u]
                x = node_feats.narrow(1, self.in1_offsets[i_in1], mul * d1)
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


def _offsets(dims: List[int]) -> List[int]:
    offsets = [0]
    for dim in dims:
        offsets.append(offsets[-1] + dim)
    return offsets


def fuse_for_export(mace: Any) -> int:
    """Give every interaction of ``mace`` (owned, unfused) whose convolution supports it the
    scriptable fused convolution, in place, skipping its dead paths; returns how many."""
    fused = 0
    for block in getattr(mace, "interactions", []):
        conv = getattr(block, "conv_tp", None)
        if conv is None or not supports_fusion(conv) or hasattr(block, "conv_fusion"):
            continue
        liveness = interaction_liveness(block)
        live = None if liveness is None else liveness.live_paths
        if live is not None and not any(live):
            live = None  # nothing live: compute every path (all zero after the linear anyway)
        block.conv_tp = ScriptableFusedConv(FusedEdgeTensorProduct(conv, live_paths=live))
        block.conv_fusion = True
        fused += 1
    return fused
