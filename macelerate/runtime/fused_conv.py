"""Fused edge tensor product + neighbour sum for mace-torch interaction blocks (CPU and GPU).

mace-torch computes a message per edge and then sums it at the receiver::

    m_ij = conv_tp(h_j, Y(r_ij), w(r_ij))          # [n_edges, channels x sum_l (2l+1)]
    M_i  = sum_j m_ij                               # scatter_sum

The per-edge tensor is the largest in the model (hundreds of MB at a few hundred atoms) and is
allocated, filled, scattered and differentiated every step. For the "uvu" tensor products MACE uses
(one weight per channel and path, edge attributes of multiplicity 1), the sum over neighbours can be
taken *before* the Clebsch-Gordan contraction::

    M_i[u, k] = sum_ij C[i, j, k] * T_i[u, i, j],   T_i[u, i, j] = sum_j w_ij[u] h_j[u, i] Y_ij[j]

and T is one batched matrix product per path over a padded [receiver, neighbour-slot] layout. No
[n_edges, channels x (2l+1)] tensor exists in the forward or backward pass. The result equals
e3nn's to floating-point reordering (~1e-15 relative in float64).

mace-torch supports this through its ``conv_fusion`` hook (used for cuEquivariance and
openequivariance): an interaction block that has a ``conv_fusion`` attribute calls
``conv_tp(node_feats, edge_attrs, tp_weights, edge_index)`` and expects the summed message.
The Clebsch-Gordan coefficients and path weights are read off the e3nn module by probing it with
basis vectors, so they are exactly the ones e3nn uses.
"""

from __future__ import annotations

import copy

import torch

from macelerate._mace import quiet_model_construction

FUSABLE_BLOCKS = ("RealAgnosticInteractionBlock", "RealAgnosticResidualInteractionBlock")
"""Interaction blocks whose ``conv_fusion`` branch is exactly ``conv_tp(h, Y, w, edge_index)``."""


def _probe_path(tp: torch.nn.Module, index: int) -> torch.Tensor:
    """Coefficients C[i, j, k] (path weight included) of instruction ``index`` of an e3nn TP."""
    ins = tp.instructions[index]
    in1, in2, out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
    d1, d2 = in1[ins.i_in1].ir.dim, in2[ins.i_in2].ir.dim
    o1, o2, oo = in1[: ins.i_in1].dim, in2[: ins.i_in2].dim, out[: ins.i_out].dim
    weight_offset = sum(tp.instructions[k].path_shape[0] for k in range(index))
    dtype = torch.float64
    x1 = torch.zeros(d1 * d2, in1.dim, dtype=dtype)
    x2 = torch.zeros(d1 * d2, in2.dim, dtype=dtype)
    weights = torch.zeros(d1 * d2, tp.weight_numel, dtype=dtype)
    for i in range(d1):
        for j in range(d2):
            x1[i * d2 + j, o1 + i] = 1.0  # channel 0, component i
            x2[i * d2 + j, o2 + j] = 1.0
    weights[:, weight_offset] = 1.0  # channel 0 of this path only
    with torch.no_grad(), quiet_model_construction():
        probe = copy.deepcopy(tp).to(dtype)(x1, x2, weights)  # the caller's module is not touched
    d_out = out[ins.i_out].ir.dim
    return probe[:, oo : oo + d_out].reshape(d1, d2, d_out)


def supports_fusion(tp: torch.nn.Module) -> bool:
    """True for e3nn TensorProducts of the form MACE's convolutions use (uvu, external weights)."""
    needed = ("instructions", "irreps_in1", "irreps_in2", "irreps_out", "weight_numel")
    if not all(hasattr(tp, name) for name in needed):
        return False
    if getattr(tp, "internal_weights", True) or getattr(tp, "shared_weights", True):
        return False
    return all(
        ins.connection_mode == "uvu"
        and ins.has_weight
        and tp.irreps_in2[ins.i_in2].mul == 1
        and tp.irreps_in1[ins.i_in1].mul == tp.irreps_out[ins.i_out].mul
        for ins in tp.instructions
    )


class FusedEdgeTensorProduct(torch.nn.Module):
    """Drop-in ``conv_tp`` for a mace-torch interaction block with ``conv_fusion`` set.

    Args:
        tp: the block's e3nn ``TensorProduct`` (left unchanged; coefficients are copied).

    Call: ``(node_feats [n_nodes, irreps_in1], edge_attrs [n_edges, irreps_in2],
    tp_weights [n_edges, weight_numel], edge_index [2, n_edges]) -> [n_nodes, irreps_out]``,
    the message summed at each receiver (``edge_index[1]``).
    """

    def __init__(self, tp: torch.nn.Module) -> None:
        super().__init__()
        if not supports_fusion(tp):
            raise ValueError("tensor product is not a uvu convolution with external weights")
        self.irreps_in1, self.irreps_in2, self.irreps_out = (
            tp.irreps_in1,
            tp.irreps_in2,
            tp.irreps_out,
        )
        dtype = next((b.dtype for b in tp.buffers() if b.is_floating_point()), torch.float64)
        self.paths: list[tuple[int, int, int, int, int, int, int]] = []
        weight_offset = 0
        for index, ins in enumerate(tp.instructions):
            mul = tp.irreps_in1[ins.i_in1].mul
            d1, d2 = tp.irreps_in1[ins.i_in1].ir.dim, tp.irreps_in2[ins.i_in2].ir.dim
            self.register_buffer(f"coefficients_{index}", _probe_path(tp, index).to(dtype))
            self.paths.append((mul, d1, d2, ins.i_in1, ins.i_in2, weight_offset, ins.i_out))
            weight_offset += mul

    @staticmethod
    def neighbor_layout(receivers: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, int]:
        """Edge index (or ``n_edges`` for padding) of every [receiver, slot]: ([n_nodes * K], K)."""
        n_edges = receivers.numel()
        order = torch.argsort(receivers, stable=True)
        counts = torch.bincount(receivers, minlength=n_nodes)
        k_max = max(int(counts.max()) if n_edges else 0, 1)
        starts = torch.cumsum(counts, 0) - counts
        sorted_receivers = receivers[order]
        slot = torch.arange(n_edges, device=receivers.device) - starts[sorted_receivers]
        layout = torch.full((n_nodes * k_max,), n_edges, dtype=torch.long, device=receivers.device)
        layout[sorted_receivers * k_max + slot] = order
        return layout, k_max

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        tp_weights: torch.Tensor,
        edge_index: torch.Tensor,
    ) -> torch.Tensor:
        n_nodes, n_edges = node_feats.shape[0], edge_index.shape[1]
        if n_edges == 0:  # no neighbours anywhere: every message is zero, still on the autograd
            # graph (through the empty edge tensors) so that forces come out as zeros
            connected = edge_attrs.sum() + tp_weights.sum()
            return node_feats.new_zeros((n_nodes, self.irreps_out.dim)) + 0.0 * connected
        senders, receivers = edge_index[0], edge_index[1]
        layout, k_max = self.neighbor_layout(receivers, n_nodes)
        padding = layout == n_edges
        # sender of each [receiver, slot]; padding slots read node 0 with zero weight
        slot_senders = torch.where(padding, 0, senders[layout.clamp(max=n_edges - 1)])

        def to_slots(edge_tensor: torch.Tensor) -> torch.Tensor:  # [n_edges, F] -> [n, K, F]
            zero_row = edge_tensor.new_zeros((1, edge_tensor.shape[1]))
            padded = torch.cat([edge_tensor, zero_row]).index_select(0, layout)
            return padded.view(n_nodes, k_max, -1)

        # Split once (split's backward is one cat; per-path slicing would allocate full-size
        # zero gradients for every path), and gather per irrep block. Blocks are gathered
        # component-major ([n, K, i, u], channels innermost) so that the per-channel edge weights
        # broadcast along a contiguous channel axis: with mace's channel-major [u, i] order the
        # multiply's inner loop would run over the 3 or 5 components only.
        x_blocks = [
            block.view(n_nodes, mul_ir.mul, mul_ir.ir.dim)
            .transpose(1, 2)
            .index_select(0, slot_senders)
            .view(n_nodes, k_max, mul_ir.ir.dim, mul_ir.mul)
            for block, mul_ir in zip(
                node_feats.split([m.dim for m in self.irreps_in1], dim=1), self.irreps_in1
            )
        ]  # [n, K, i, u] per input irrep
        y_blocks = to_slots(edge_attrs).split([m.dim for m in self.irreps_in2], dim=2)
        w_paths = to_slots(tp_weights).split([path[0] for path in self.paths], dim=2)
        blocks: dict[int, torch.Tensor] = {}
        for index, (mul, d1, d2, i_in1, i_in2, _, i_out) in enumerate(self.paths):
            coefficients = getattr(self, f"coefficients_{index}")
            xw = x_blocks[i_in1] * w_paths[index].unsqueeze(2)  # [n, K, i, u]
            left = xw.view(n_nodes, k_max, d1 * mul).transpose(1, 2)  # [n, i*u, K]
            summed = torch.bmm(left, y_blocks[i_in2])  # [n, i*u, j]: the neighbour sum
            block = torch.einsum("niuj,ijk->nuk", summed.view(n_nodes, d1, mul, d2), coefficients)
            blocks[i_out] = block.reshape(n_nodes, -1)
        return torch.cat([blocks[i] for i in range(len(self.irreps_out))], dim=1)


def fuse_message_passing(model: torch.nn.Module) -> int:
    """Replace every supported ``conv_tp`` of ``model`` (in place) by a fused one.

    Returns the number of interaction blocks that run fused afterwards.

    Callers own ``model``: :class:`~macelerate.models.potential.Potential` applies this to its
    private copy, never to the user's module. TorchScript exports and blocks already fused
    (cuEquivariance, openequivariance) are left as they are.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return 0
    fused = 0
    for block in getattr(model, "interactions", []):
        tp = getattr(block, "conv_tp", None)
        if isinstance(tp, FusedEdgeTensorProduct):
            fused += 1
            continue
        if type(block).__name__ not in FUSABLE_BLOCKS or tp is None:
            continue
        if hasattr(block, "conv_fusion") or not supports_fusion(tp):
            continue
        block.conv_tp = FusedEdgeTensorProduct(tp)
        block.conv_fusion = "macelerate"
        fused += 1
    return fused
