"""A student's direct heads in a form TorchScript compiles, for metatomic exports.

Node heads and the confidence head are mirrored by wrappers; edge heads compile as they are and
get a wrapper that builds their inputs from the export's graph.

:class:`~macelerate.models.heads.DirectForceHead` and
:class:`~macelerate.models.heads.DirectStressHead` are written for eager PyTorch (their scatter
uses ``*shape`` unpacking, which TorchScript cannot size). The wrappers below hold the same
submodules and buffers and redo the few tensor operations around them with fixed shapes. Every
export checks them against the eager heads (:mod:`macelerate.export.verify`), so a change to
the heads that is not mirrored here makes the export fail instead of drift.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

from typing import Any

import torch

from macelerate.graph.smooth_cap import weights_at_thresholds
from macelerate.graph.smooth_cap_torch import soft_count_thresholds
from macelerate.models.edge_heads import edge_virial_stress
from macelerate.models.heads import ConfidenceHead, DirectForceHead, DirectStressHead


class ScriptableForceHead(torch.nn.Module):
    """:class:`DirectForceHead`'s forward: node features [n_atoms, D] -> forces [n_atoms, 3]."""

    to_e3nn: torch.Tensor  # [3, 3] e3nn 1o order -> Cartesian

    def __init__(self, head: DirectForceHead):
        super().__init__()
        self.linear_in = head.linear_in
        self.gate = head.gate
        self.linear_out = head.linear_out
        to_e3nn: Any = head.to_e3nn  # a buffer (typed Tensor | Module through nn.Module)
        self.register_buffer("to_e3nn", to_e3nn.clone())
        self.remove_net_force = bool(head.remove_net_force)

    def forward(self, node_feats: torch.Tensor, batch: torch.Tensor, n_graphs: int) -> torch.Tensor:
        vectors = self.linear_out(self.gate(self.linear_in(node_feats)))  # [n_atoms, 3], e3nn order
        forces = vectors @ self.to_e3nn.to(vectors.dtype)
        if self.remove_net_force:
            counts = torch.bincount(batch, minlength=n_graphs).clamp(min=1).to(forces.dtype)
            total = torch.zeros((n_graphs, 3), dtype=forces.dtype, device=forces.device)
            mean = total.index_add(0, batch, forces) / counts[:, None]  # [n_graphs, 3]
            forces = forces - mean[batch]
        return forces


class ScriptableStressHead(torch.nn.Module):
    """:class:`DirectStressHead`'s forward: -> stress [n_graphs, 3, 3] eV/Å³ (0 without volume)."""

    basis: torch.Tensor  # [6, 3, 3] 1x0e + 1x2e -> symmetric Cartesian

    def __init__(self, head: DirectStressHead):
        super().__init__()
        self.linear = head.linear
        self.pre = head.pre
        self.square = head.square
        basis: Any = head.basis  # a buffer
        self.register_buffer("basis", basis.clone())

    def forward(
        self, node_feats: torch.Tensor, batch: torch.Tensor, cell: torch.Tensor, n_graphs: int
    ) -> torch.Tensor:
        hidden = self.pre(node_feats)
        coefficients = self.linear(node_feats) + self.square(hidden, hidden)  # [n_atoms, 6]
        per_atom = torch.einsum("nk,kij->nij", coefficients, self.basis.to(coefficients.dtype))
        zeros = torch.zeros((n_graphs, 3, 3), dtype=per_atom.dtype, device=per_atom.device)
        total = zeros.index_add(0, batch, per_atom)  # [n_graphs, 3, 3] eV
        volume = torch.linalg.det(cell.view(n_graphs, 3, 3).to(total.dtype)).abs()  # [n_graphs]
        safe = torch.where(volume > 1e-8, volume, torch.ones_like(volume))
        return torch.where(volume[:, None, None] > 1e-8, total / safe[:, None, None], zeros)


class ScriptableEdgeHeads(torch.nn.Module):
    """An :class:`~macelerate.models.edge_heads.EdgeForceHead` (compiled as it is) on the
    export's graph: edge vectors, the smooth-cap weights the student's forward computes, the
    head's pair forces, and their virial as stress.

    Args:
        force_head: the student's edge force head.
        virial_stress: whether the student has a direct stress (the virial of the pair forces).
        max_neighbors: the smooth cap's k, or 0 without a smooth cap.
        width: the cap's δ in Å (unused without a cap).
        ceiling: the largest threshold in Å, r_max + δ (unused without a cap).
    """

    def __init__(
        self,
        force_head: torch.nn.Module,
        virial_stress: bool,
        max_neighbors: int = 0,
        width: float = 1.0,
        ceiling: float = 0.0,
    ):
        super().__init__()
        self.force_head = force_head
        self.virial_stress = virial_stress
        self.max_neighbors = max_neighbors
        self.width = width
        self.ceiling = ceiling

    def forward(
        self, node_feats: torch.Tensor, graph: dict[str, torch.Tensor], n_graphs: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forces [n_atoms, 3] eV/Å, stress [n_graphs, 3, 3] eV/Å³)``; the stress is zero
        without ``virial_stress``."""
        positions, edge_index = graph["positions"], graph["edge_index"]
        receivers = edge_index[1]
        vectors = positions[receivers] - positions[edge_index[0]] + graph["shifts"]  # [n_edges, 3]
        cap_weight: torch.Tensor | None = None
        if self.max_neighbors > 0:
            lengths = torch.linalg.vector_norm(vectors, dim=-1)
            n_nodes = positions.shape[0]
            threshold = soft_count_thresholds(
                lengths, receivers, n_nodes, self.max_neighbors, self.width, self.ceiling
            )
            cap_weight = weights_at_thresholds(
                lengths, receivers, threshold, n_nodes, self.width, self.ceiling
            )
        forces, edge_forces = self.force_head(
            node_feats, edge_index, vectors, cap_weight, graph["batch"], n_graphs
        )
        if self.virial_stress:
            stress = edge_virial_stress(
                vectors, edge_forces, graph["batch"][receivers], graph["cell"], n_graphs
            )
        else:
            stress = torch.zeros((n_graphs, 3, 3), dtype=forces.dtype, device=forces.device)
        return forces, stress


class ScriptableConfidenceHead(torch.nn.Module):
    """:class:`~macelerate.models.heads.ConfidenceHead` and ``expected_force_error``: node
    features [n_atoms, D] -> expected per-atom force error [n_atoms] in eV/Å."""

    scalar_columns: torch.Tensor  # [n_scalars] int64 columns of the 0e features
    centres: torch.Tensor  # [n_bins] eV/Å, the middle of each force-error bin

    def __init__(self, head: ConfidenceHead):
        super().__init__()
        self.mlp = head.mlp
        columns: Any = head.scalar_columns  # a buffer
        edges: Any = head.bin_edges  # a buffer
        self.register_buffer("scalar_columns", columns.clone())
        self.register_buffer("centres", 0.5 * (edges[1:] + edges[:-1]))

    def forward(self, node_feats: torch.Tensor) -> torch.Tensor:
        logits = self.mlp(node_feats[:, self.scalar_columns])  # [n_atoms, n_bins]
        return torch.softmax(logits, dim=-1) @ self.centres.to(logits.dtype)
