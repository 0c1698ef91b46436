"""Receiver-major, padded neighbour slots: the layout the fused convolution sums over.

Every atom gets ``k`` slots (``k`` = the largest number of incoming edges); slot ``[i, s]`` holds
the ``s``-th incoming edge of receiver ``i`` in edge order, or padding. Per-edge tensors are
gathered into this layout with one ``index_select``; padding slots read edge 0 and are made
inert by zero edge attributes (so they contribute exactly nothing, to values and gradients).

The layout depends only on ``edge_index``; :class:`LayoutCache` computes it once per graph and
shares it between the interaction blocks of one model.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NeighbourLayout:
    """Padded receiver-major slots of a graph.

    Attributes:
        n_nodes: number of atoms.
        k: slots per atom (largest in-degree, at least 1).
        edge_of_slot: [n_nodes * k] int64 edge index of every slot (0 at padding).
        valid: [n_nodes * k] bool, False at padding.
        sender_of_slot: [n_nodes * k] int64 sender atom of every slot (0 at padding).
    """

    n_nodes: int
    k: int
    edge_of_slot: torch.Tensor
    valid: torch.Tensor
    sender_of_slot: torch.Tensor

    @classmethod
    def build(cls, edge_index: torch.Tensor, n_nodes: int) -> NeighbourLayout:
        """Layout of ``edge_index`` ([2, n_edges]: sender, receiver) over ``n_nodes`` atoms."""
        senders, receivers = edge_index[0], edge_index[1]
        n_edges = receivers.numel()
        device = receivers.device
        counts = torch.bincount(receivers, minlength=n_nodes)
        k = max(int(counts.max()) if n_edges else 0, 1)
        order = torch.argsort(receivers, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        sorted_receivers = receivers[order]
        slot = torch.arange(n_edges, device=device) - starts[sorted_receivers]
        flat = sorted_receivers * k + slot
        edge_of_slot = torch.zeros(n_nodes * k, dtype=torch.long, device=device)
        edge_of_slot[flat] = order
        valid = torch.zeros(n_nodes * k, dtype=torch.bool, device=device)
        valid[flat] = True
        sender_of_slot = torch.zeros(n_nodes * k, dtype=torch.long, device=device)
        sender_of_slot[flat] = senders[order]
        return cls(n_nodes, k, edge_of_slot, valid, sender_of_slot)

    def gather(self, edge_tensor: torch.Tensor, *, zero_padding: bool) -> torch.Tensor:
        """[n_edges, F] -> [n_nodes, k, F]; padding rows are zero if ``zero_padding``.

        Rows read at padding slots are otherwise edge 0's: use ``zero_padding=False`` only for
        tensors whose padding rows are multiplied by a zero-padded tensor afterwards.
        """
        if edge_tensor.shape[0] == 0:
            shape = (self.n_nodes, self.k, edge_tensor.shape[1])
            return edge_tensor.new_zeros(shape) + 0.0 * edge_tensor.sum()
        slots = edge_tensor.index_select(0, self.edge_of_slot)
        if zero_padding:
            slots = slots * self.valid.unsqueeze(1).to(slots.dtype)
        return slots.view(self.n_nodes, self.k, -1)


class LayoutCache:
    """The layout of the last graph seen, shared by the fused blocks of one model.

    The cached entry holds the ``edge_index`` tensor itself and is reused only for that same
    tensor object, unmodified (identity and version counter), never for a new tensor that happens
    to reuse its memory. Safe to share between threads: entries are replaced whole.
    """

    def __init__(self) -> None:
        self._entry: tuple[torch.Tensor, int, int, NeighbourLayout] | None = None
        self._lock = threading.Lock()

    def get(self, edge_index: torch.Tensor, n_nodes: int) -> NeighbourLayout:
        """The layout of ``edge_index`` over ``n_nodes`` atoms (built at most once per graph)."""
        entry = self._entry
        if (
            entry is not None
            and entry[0] is edge_index
            and entry[1] == edge_index._version
            and entry[2] == n_nodes
        ):
            return entry[3]
        layout = NeighbourLayout.build(edge_index, n_nodes)
        with self._lock:
            self._entry = (edge_index, edge_index._version, n_nodes, layout)
        return layout

    def __deepcopy__(self, memo: dict) -> LayoutCache:
        return LayoutCache()  # a copied model starts with an empty cache

    def __getstate__(self) -> dict:
        return {}  # pickled models (torch.save of a module) carry no cached graph or lock

    def __setstate__(self, state: dict) -> None:
        self.__init__()  # type: ignore[misc]
