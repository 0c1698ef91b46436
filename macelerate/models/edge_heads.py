"""Direct force heads that work on edges: per-pair forces summed on each atom, and their virial.

A node head (:class:`~macelerate.models.heads.DirectForceHead`) needs ``1o`` node features, so
it cannot sit on an L=0 backbone, the cheapest students there are. An edge head needs only the
invariant (``0e``) node features: for every edge j -> i with vector ``v_ij = r_i - r_j`` (Å) it
predicts a force on i from the two atoms' features and the edge's radial basis, and sums them.

* ``EdgeForceHead(cartesian=False)``: ``f_ij = c_ij · φ(s_i + s_j, s_i ⊙ s_j, R(|v_ij|)) · v̂_ij``,
  a central pair force of learned, environment-dependent size. Rotation equivariant by
  construction; symmetric in i, j, so ``f_ji = -f_ij`` wherever ``c`` is symmetric.
* ``EdgeForceHead(cartesian=True)``: the non-equivariant block as a force head: an MLP that also
  reads the raw vector ``v_ij / r_max`` and returns three numbers, made odd in ``v`` (so
  ``f_ji = -f_ij`` where ``c`` is symmetric). Not rotation equivariant: the equigrad regulariser
  or rotation augmentation keeps it so in practice.

``R`` is a Bessel basis and ``c_ij`` mace-torch's polynomial envelope of the edge length (times
the smooth-cap weight for a smooth-capped student), both the head's own, so levers that replace
the backbone's radial embedding (tabulation) leave the head alone. Every pair force goes to zero
continuously at the cutoff and as a neighbour leaves the cap. Stress follows from the same pair
forces as a virial (:func:`edge_virial_stress`): direct stress without another head.
"""

from __future__ import annotations

from typing import Any

import torch

from macelerate._mace import import_mace
from macelerate.models.heads import (
    per_volume,
    remove_net_force,
    scalar_feature_columns,
    scatter_per_graph,
)


class EdgeForceHead(torch.nn.Module):
    """Per-atom forces as sums of learned pair forces over the graph's edges.

    Args:
        irreps_in: irreps of the node features; only the ``0e`` columns are read.
        r_max: cutoff in Å of the pair forces.
        n_basis: number of Bessel functions of the edge length.
        envelope_power: p of mace-torch's polynomial envelope.
        hidden: width of the two hidden layers of the pair MLP.
        cartesian: read the raw edge vector too (not rotation equivariant).
        remove_net_force: subtract each structure's mean force, so forces sum to zero.
    """

    def __init__(
        self,
        irreps_in: str,
        *,
        r_max: float,
        n_basis: int = 8,
        envelope_power: int = 5,
        hidden: int = 64,
        cartesian: bool = False,
        remove_net_force: bool = True,
    ) -> None:
        super().__init__()
        columns = scalar_feature_columns(irreps_in)
        if columns.numel() == 0:
            raise ValueError(f"an edge force head needs 0e node features, got {irreps_in}")
        # [S] int64 columns of the 0e node features. Typed here, not at class level: TorchScript
        # compiles this module for the metatomic export and cannot read postponed class ones.
        self.register_buffer("scalar_columns", columns, persistent=False)
        self.scalar_columns: torch.Tensor
        import_mace()
        from mace.modules.radial import BesselBasis, PolynomialCutoff

        self.basis: Any = BesselBasis(r_max=float(r_max), num_basis=int(n_basis))
        self.envelope: Any = PolynomialCutoff(r_max=float(r_max), p=int(envelope_power))
        self.cartesian = bool(cartesian)
        self.r_max = float(r_max)
        self.remove_net_force = remove_net_force
        n_scalars = int(columns.numel())
        width_in = 2 * n_scalars + int(n_basis) + (3 if cartesian else 0)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width_in, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.SiLU(),
            torch.nn.Linear(hidden, 3 if cartesian else 1),
        )

    def edge_forces(
        self,
        node_feats: torch.Tensor,
        edge_index: torch.Tensor,
        vectors: torch.Tensor,
        cap_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Force [n_edges, 3] in eV/Å on each edge's receiver from its sender.

        Args:
            node_feats: [n_atoms, D] node features.
            edge_index: [2, n_edges] (sender, receiver), mace-torch's convention.
            vectors: [n_edges, 3] ``r_receiver - r_sender (+ shift)`` in Å.
            cap_weight: [n_edges] smooth-cap weights in [0, 1], or None (no cap).
        """
        lengths = torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)  # [n_edges, 1]
        edge_feats = self.basis(lengths)  # [n_edges, n_basis]
        edge_weight = self.envelope(lengths)  # [n_edges, 1]
        if cap_weight is not None:
            edge_weight = edge_weight * cap_weight[:, None]
        scalars = node_feats[:, self.scalar_columns]
        sender, receiver = edge_index[0], edge_index[1]
        s_i, s_j = scalars[receiver], scalars[sender]
        pair = [s_i + s_j, s_i * s_j, edge_feats]  # symmetric in i, j
        if not self.cartesian:
            unit = vectors / lengths.clamp(min=1e-9)
            return edge_weight * self.mlp(torch.cat(pair, dim=-1)) * unit
        scaled = vectors / self.r_max
        plus = self.mlp(torch.cat(pair + [scaled], dim=-1))
        minus = self.mlp(torch.cat(pair + [-scaled], dim=-1))
        return edge_weight * 0.5 * (plus - minus)  # odd in v: f_ji = -f_ij for symmetric inputs

    def forward(
        self,
        node_feats: torch.Tensor,
        edge_index: torch.Tensor,
        vectors: torch.Tensor,
        cap_weight: torch.Tensor | None,
        batch: torch.Tensor,
        n_graphs: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(forces [n_atoms, 3], edge forces [n_edges, 3])`` in eV/Å; see :meth:`edge_forces`."""
        per_edge = self.edge_forces(node_feats, edge_index, vectors, cap_weight)
        forces = torch.zeros(
            (node_feats.shape[0], 3), dtype=per_edge.dtype, device=per_edge.device
        ).index_add_(0, edge_index[1], per_edge)
        if self.remove_net_force:
            forces = remove_net_force(forces, batch, n_graphs)
        return forces, per_edge


def edge_virial_stress(
    vectors: torch.Tensor,
    edge_forces: torch.Tensor,
    edge_graph: torch.Tensor,
    cell: torch.Tensor,
    n_graphs: int,
) -> torch.Tensor:
    """Stress [n_graphs, 3, 3] in eV/Å³ from pair forces: ``-sym(Σ_e v_e ⊗ f_e) / (2 V)``.

    For a pair potential with every pair seen from both ends this is exactly the strain
    derivative of the energy over the volume (ASE's sign). Structures of zero volume get zero.

    Args:
        vectors: [n_edges, 3] ``r_receiver - r_sender (+ shift)`` in Å.
        edge_forces: [n_edges, 3] force on each receiver from its sender, eV/Å.
        edge_graph: [n_edges] structure index of each edge.
        cell: [3 * n_graphs, 3] lattice vectors as rows, Å.
        n_graphs: number of structures.
    """
    outer = vectors[:, :, None] * edge_forces[:, None, :]  # [n_edges, 3, 3]
    outer = 0.5 * (outer + outer.transpose(1, 2))
    total = -0.5 * scatter_per_graph(outer, edge_graph, n_graphs)  # [n_graphs, 3, 3] eV
    return per_volume(total, cell, n_graphs)


class EdgeVirialStress(torch.nn.Module):
    """A student's direct stress head when its forces come from an :class:`EdgeForceHead`.

    No weights: the stress is the virial of the head's pair forces (:func:`edge_virial_stress`).
    """

    def forward(
        self,
        vectors: torch.Tensor,
        edge_forces: torch.Tensor,
        edge_graph: torch.Tensor,
        cell: torch.Tensor,
        n_graphs: int,
    ) -> torch.Tensor:
        """Stress [n_graphs, 3, 3] in eV/Å³; arguments as :func:`edge_virial_stress`."""
        return edge_virial_stress(vectors, edge_forces, edge_graph, cell, n_graphs)
