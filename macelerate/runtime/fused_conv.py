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
from collections.abc import Sequence
from typing import Any

import torch

from macelerate._mace import quiet_model_construction
from macelerate.mace.contract import INTERACTION_CLASSES
from macelerate.runtime.neighbour_layout import LayoutCache, NeighbourLayout

FUSABLE_BLOCKS = INTERACTION_CLASSES
"""Interaction blocks whose ``conv_fusion`` branch is exactly ``conv_tp(h, Y, w, edge_index)``."""


def _probe_path(tp: Any, index: int) -> torch.Tensor:
    """Coefficients C[i, j, k] (path weight included) of instruction ``index`` of an e3nn TP.

    ``tp`` is evaluated in float64: pass a float64 copy (the caller's module is not touched).
    """
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
    with torch.no_grad():
        probe = tp(x1, x2, weights)
    d_out = out[ins.i_out].ir.dim
    return probe[:, oo : oo + d_out].reshape(d1, d2, d_out)


def supports_fusion(tp: Any) -> bool:
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
        live_paths: per instruction, False if its output is known to be multiplied by zero
            afterwards (see :mod:`macelerate.runtime.dead_blocks`); such paths are not computed
            and their output block is zero. Default: all live.
        compact_weights: ``tp_weights`` holds only the live paths' columns (a radial MLP sliced to
            them) instead of all ``weight_numel``.

    Call: ``(node_feats [n_nodes, irreps_in1], edge_attrs [n_edges, irreps_in2],
    tp_weights [n_edges, weight_numel], edge_index [2, n_edges]) -> [n_nodes, irreps_out]``,
    the message summed at each receiver (``edge_index[1]``).
    """

    scalar_column_index: torch.Tensor  # [weight columns] int64, when folds_senders

    def __init__(
        self,
        tp: Any,
        *,
        live_paths: tuple[bool, ...] | None = None,
        compact_weights: bool = False,
    ) -> None:
        super().__init__()
        if not supports_fusion(tp):
            raise ValueError("tensor product is not a uvu convolution with external weights")
        self.irreps_in1, self.irreps_in2, self.irreps_out = (
            tp.irreps_in1,
            tp.irreps_in2,
            tp.irreps_out,
        )
        self.live_paths = tuple(live_paths) if live_paths else (True,) * len(tp.instructions)
        if len(self.live_paths) != len(tp.instructions):
            raise ValueError("live_paths needs one flag per tensor-product instruction")
        self.compact_weights = compact_weights
        self.layout_cache = LayoutCache()
        dtype = next((b.dtype for b in tp.buffers() if b.is_floating_point()), torch.float64)
        tp64 = tp
        if dtype != torch.float64:  # probe in float64 on a copy; tp itself is never touched
            with quiet_model_construction():
                tp64 = copy.deepcopy(tp).to(torch.float64)
        self.paths: list[tuple[int, int, int, int, int, int, int]] = []
        self.diagonal_scale: list[float | None] = []
        weight_offset = 0
        for index, ins in enumerate(tp.instructions):
            mul = tp.irreps_in1[ins.i_in1].mul
            d1, d2 = tp.irreps_in1[ins.i_in1].ir.dim, tp.irreps_in2[ins.i_in2].ir.dim
            coefficients = _probe_path(tp64, index)
            self.register_buffer(f"coefficients_{index}", coefficients.to(dtype))
            self.paths.append((mul, d1, d2, ins.i_in1, ins.i_in2, weight_offset, ins.i_out))
            self.diagonal_scale.append(_diagonal_scale(coefficients))
            weight_offset += mul
        columns = self._scalar_input_columns()  # fixed by the paths: computed once, not per step
        self.folds_senders = columns is not None
        self.register_buffer(
            "scalar_column_index", torch.tensor(columns or [], dtype=torch.long), persistent=False
        )

    @staticmethod
    def neighbor_layout(receivers: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, int]:
        """Edge index (or ``n_edges`` for padding) of every [receiver, slot]: ([n_nodes * K], K)."""
        layout = NeighbourLayout.build(torch.stack([receivers, receivers]), n_nodes)
        index = torch.where(layout.valid, layout.edge_of_slot, receivers.numel())
        return index, layout.k

    def weight_widths(self) -> list[int]:
        """Columns of ``tp_weights`` per instruction (0 for dead paths with compact weights)."""
        return [
            path[0] if live or not self.compact_weights else 0
            for path, live in zip(self.paths, self.live_paths)
        ]

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        tp_weights: torch.Tensor,
        edge_index: torch.Tensor | NeighbourLayout,
        senders_folded: bool = False,
    ) -> torch.Tensor:
        """The summed message; with a :class:`NeighbourLayout` instead of ``edge_index``, the edge
        tensors are already in its slot layout (see :meth:`sum_slots`, also for
        ``senders_folded``)."""
        if isinstance(edge_index, NeighbourLayout):
            return self.sum_slots(node_feats, edge_attrs, tp_weights, edge_index, senders_folded)
        if senders_folded:
            raise ValueError("senders_folded needs the slot layout")
        n_nodes, n_edges = node_feats.shape[0], edge_index.shape[1]
        if n_edges == 0:  # no neighbours anywhere: every message is zero, still on the autograd
            # graph (through the empty edge tensors) so that forces come out as zeros
            connected = edge_attrs.sum() + tp_weights.sum()
            return node_feats.new_zeros((n_nodes, self.irreps_out.dim)) + 0.0 * connected
        layout = self.layout_cache.get(edge_index, n_nodes)
        y_slots = layout.gather(edge_attrs, zero_padding=True)  # zero at padding: adds nothing
        w_slots = layout.gather(tp_weights, zero_padding=False)
        return self.sum_slots(node_feats, y_slots, w_slots, layout)

    def sum_slots(
        self,
        node_feats: torch.Tensor,
        y_slots: torch.Tensor,
        w_slots: torch.Tensor | Sequence[torch.Tensor],
        layout: NeighbourLayout,
        senders_folded: bool = False,
    ) -> torch.Tensor:
        """The summed message from edge tensors already in the slot layout.

        Args:
            node_feats: [n_nodes, irreps_in1].
            y_slots: [n_nodes, K, irreps_in2] edge attributes, **zero at padding slots**.
            w_slots: [n_nodes, K, weight columns] tensor-product weights (any finite values at
                padding slots), or one [n_nodes, K, width] block per instruction
                (:meth:`weight_widths`; dead paths' blocks are not read).
            layout: the graph's :class:`NeighbourLayout`.
            senders_folded: the weights already hold the product with the sender's scalar
                features (every live path has a scalar input: ``folds_senders``),
                so ``node_feats`` is not read.

        Returns:
            [n_nodes, irreps_out]
        """
        n_nodes, k = layout.n_nodes, layout.k
        y_blocks = y_slots.split([m.dim for m in self.irreps_in2], dim=2)  # [n, K, 2l+1] each
        widths = self.weight_widths()
        if isinstance(w_slots, torch.Tensor):
            w_paths: Sequence[torch.Tensor] = w_slots.split(widths, dim=2)
        elif len(w_slots) != len(widths):
            raise ValueError(f"need {len(widths)} weight blocks (one per path), got {len(w_slots)}")
        else:
            w_paths = w_slots
        if senders_folded and not self.folds_senders:
            raise ValueError("senders_folded needs every live path to have a scalar input")
        x_blocks = (
            {} if senders_folded else self._sender_blocks(node_feats, layout.sender_of_slot, k)
        )
        blocks: dict[int, torch.Tensor] = {}
        for index, (mul, d1, d2, i_in1, i_in2, _, i_out) in enumerate(self.paths):
            if not self.live_paths[index]:
                continue
            coefficients = getattr(self, f"coefficients_{index}")
            y, w = y_blocks[i_in2], w_paths[index]
            if d1 == 1:  # scalar input: the neighbour sum is one [2l+1, K] x [K, u] product
                xw = w if senders_folded else x_blocks[i_in1] * w
                summed = torch.bmm(y.transpose(1, 2), xw)  # [n, j, u]
                scale = self.diagonal_scale[index]
                if scale is not None:
                    block = (summed * scale).transpose(1, 2)  # C = scale * identity
                else:
                    block = torch.einsum("nju,jk->nuk", summed, coefficients[0])
            else:
                xw = x_blocks[i_in1] * w.unsqueeze(2)  # [n, K, i, u]
                left = xw.view(n_nodes, k, d1 * mul).transpose(1, 2)  # [n, i*u, K]
                summed = torch.bmm(left, y)  # [n, i*u, j]: the neighbour sum
                block = torch.einsum(
                    "niuj,ijk->nuk", summed.view(n_nodes, d1, mul, d2), coefficients
                )
            blocks[i_out] = block.reshape(n_nodes, -1)
        out = [
            blocks[i] if i in blocks else node_feats.new_zeros((n_nodes, mul_ir.dim))
            for i, mul_ir in enumerate(self.irreps_out)
        ]
        return torch.cat(out, dim=1)

    def _scalar_input_columns(self) -> list[int] | None:
        """For each weight column (:meth:`weight_widths` order), the ``node_feats`` column it
        multiplies, when every live path has a scalar input; else None.

        Then ``w[e, c] * node_feats[sender, column[c]]`` is each path's per-edge product, which
        a caller can fold into the weights (``sum_slots(..., senders_folded=True)``). Kept as
        ``folds_senders`` and the int64 buffer ``scalar_column_index``.
        """
        offsets = [0]
        for mul_ir in self.irreps_in1:
            offsets.append(offsets[-1] + mul_ir.dim)
        columns: list[int] = []
        paths = zip(self.paths, self.live_paths, self.weight_widths())
        for (mul, d1, _, i_in1, _, _, _), live, width in paths:
            if not live:  # unread columns (none with compact weights)
                columns.extend([0] * width)
                continue
            if d1 != 1:
                return None
            columns.extend(range(offsets[i_in1], offsets[i_in1] + mul))
        return columns

    def _sender_blocks(
        self, node_feats: torch.Tensor, senders: torch.Tensor, k: int
    ) -> dict[int, torch.Tensor]:
        """Sender features of every slot per input irrep used by a live path.

        Scalars as [n, K, u]; higher irreps component-major as [n, K, i, u] (channels innermost,
        so that the per-channel edge weights broadcast along a contiguous axis).
        """
        n_nodes = node_feats.shape[0]
        used = {path[3] for path, live in zip(self.paths, self.live_paths) if live}
        blocks = {}
        offsets = [0]
        for mul_ir in self.irreps_in1:
            offsets.append(offsets[-1] + mul_ir.dim)
        for i, mul_ir in enumerate(self.irreps_in1):
            if i not in used:
                continue
            block = node_feats[:, offsets[i] : offsets[i + 1]]
            mul, dim = mul_ir.mul, mul_ir.ir.dim
            if dim == 1:
                blocks[i] = block.index_select(0, senders).view(n_nodes, k, mul)
            else:
                gathered = block.view(-1, mul, dim).transpose(1, 2).index_select(0, senders)
                blocks[i] = gathered.view(n_nodes, k, dim, mul)
        return blocks


def _diagonal_scale(coefficients: torch.Tensor) -> float | None:
    """``s`` if the [1, j, k] coefficients of a scalar-input path are ``s`` times the identity."""
    if coefficients.shape[0] != 1 or coefficients.shape[1] != coefficients.shape[2]:
        return None
    matrix = coefficients[0]
    scale = float(matrix[0, 0])
    identity = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    if scale != 0 and torch.allclose(matrix, scale * identity, rtol=0, atol=1e-14 * abs(scale)):
        return scale
    return None


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
    layouts = LayoutCache()  # one neighbour layout per graph, shared by all blocks
    for block in getattr(model, "interactions", []):
        tp = getattr(block, "conv_tp", None)
        if isinstance(tp, FusedEdgeTensorProduct):
            tp.layout_cache = layouts
            fused += 1
            continue
        if type(block).__name__ not in FUSABLE_BLOCKS or tp is None:
            continue
        if hasattr(block, "conv_fusion") or not supports_fusion(tp):
            continue
        block.conv_tp = FusedEdgeTensorProduct(tp)
        block.conv_tp.layout_cache = layouts
        block.conv_fusion = "macelerate"
        fused += 1
    return fused
