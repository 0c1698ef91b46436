"""Student layers without tensor products: smoothed attention and a non-equivariant edge MLP.

Both are drop-in replacements for one mace-torch interaction + product pair inside a student's
``ScaleShiftMACE`` (:mod:`macelerate.models.hybrid`), so mace-torch's own forward, autograd
forces and stress, the smooth cap and every training loss work unchanged. They read only the
``0e`` columns of the incoming node features and write ``channels`` scalars ([n_atoms, C]).

Call contract (mace-torch 0.3.16's interaction loop)::

    message, skip = interaction(node_attrs=..., node_feats=..., edge_attrs=..., edge_feats=...,
                                edge_index=..., cutoff=..., first_layer=..., ...)
    node_feats = product(node_feats=message, sc=skip, node_attrs=...)

``edge_feats`` is the radial basis [n_edges, n_basis] and ``cutoff`` [n_edges, 1] the smooth
envelope times any smooth-cap weight: a hybrid student's radial embedding is built with
``apply_cutoff=False`` so the envelope reaches these blocks separately. Every edge term is
multiplied by ``cutoff``, which goes to zero with all derivatives at the cutoff (and as the
smooth cap drops a neighbour), so energies stay continuous as neighbours enter or leave.

Edges run sender ``edge_index[0]`` -> receiver ``edge_index[1]`` with vector
``r[receiver] - r[sender] + shift`` (mace-torch's convention).

The blocks compile with TorchScript (metatomic exports of hybrid students): no ``from __future__
import annotations`` (TorchScript reads the annotations), and the forwards take mace-torch's
LAMMPS arguments explicitly.
"""

# ruff: noqa: UP006, UP035, UP045

import math
from typing import Any, List, Optional, Tuple

import torch

from macelerate.models.heads import cartesian_basis

LOGIT_BOUND = 8.0
"""Attention logits are soft-clamped to ±LOGIT_BOUND (``b·tanh(a/b)``) so ``exp`` stays finite."""


def scalar_columns(irreps: Any) -> torch.Tensor:
    """[n_scalars] int64 columns of the ``0e`` features in an e3nn irreps layout."""
    columns: List[int] = []
    offset = 0
    for mul, ir in irreps:
        width = mul * ir.dim
        if (ir.l, ir.p) == (0, 1):
            columns.extend(range(offset, offset + width))
        offset += width
    if not columns:
        raise ValueError(f"a scalar student layer needs 0e input features, got {irreps}")
    return torch.tensor(columns, dtype=torch.int64)


def _scatter_rows(values: torch.Tensor, index: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Rows of ``values`` [n, F] summed into [n_rows, F] by ``index`` [n]."""
    out = values.new_zeros((n_rows, values.shape[1]))
    return out.index_add_(0, index, values)


def _mlp(sizes: List[int]) -> torch.nn.Sequential:
    layers: List[torch.nn.Module] = []
    for index, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if index < len(sizes) - 2:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)


class _ScalarEdgeBlock(torch.nn.Module):
    """Shared input handling: the 0e columns of the node features, projected to C channels."""

    columns: torch.Tensor

    def __init__(self, irreps_in: Any, *, channels: int) -> None:
        super().__init__()
        self.register_buffer("columns", scalar_columns(irreps_in), persistent=False)
        self.channels = channels
        self.node_in = torch.nn.Linear(int(self.columns.numel()), channels)

    def _envelope(self, cutoff: Optional[torch.Tensor], edge_feats: torch.Tensor) -> torch.Tensor:
        if cutoff is None:  # only a model built with apply_cutoff=True passes None
            raise ValueError(
                "scalar student layers need the cutoff envelope separately: build the radial "
                "embedding with apply_cutoff=False (macelerate.models.hybrid does)"
            )
        return cutoff.to(edge_feats.dtype)  # [n_edges, 1]


class SmoothAttentionInteraction(_ScalarEdgeBlock):
    """Invariant multi-head graph attention whose weights carry the smooth cutoff envelope.

    ``α_ij^h = c_ij exp(a_ij^h) / (1 + Σ_k c_ik exp(a_ik^h))`` with logits
    ``a_ij^h = q_i^h · k_j^h / sqrt(d) + w^h · e_ij`` (e: radial basis of r_ij, c: envelope x cap
    weight) and message ``m_i = Σ_j α_ij (W_v h_j) ⊙ R(e_ij)``. The constant 1 in the
    denominator is a null neighbour: weights vary smoothly as ``c_ij -> 0`` and an atom without
    neighbours gets a zero message. No spherical harmonics or tensor products are evaluated.

    Args:
        irreps_in: irreps of the incoming node features (its ``0e`` part is read).
        channels: C, the width of the scalar features and messages.
        num_basis: size of the radial basis ``edge_feats``.
        heads: attention heads (C must be divisible by it).
        radial_hidden: width of the value filter ``R``'s hidden layer.
    """

    def __init__(
        self, irreps_in: Any, *, channels: int, num_basis: int, heads: int = 4,
        radial_hidden: int = 32,
    ) -> None:  # fmt: skip
        super().__init__(irreps_in, channels=channels)
        if channels % heads:
            raise ValueError(f"attention channels {channels} must be divisible by heads {heads}")
        self.heads = heads
        self.logit_bound = LOGIT_BOUND  # an attribute: TorchScript reads no module globals
        self.query = torch.nn.Linear(channels, channels, bias=False)
        self.key = torch.nn.Linear(channels, channels, bias=False)
        self.value = torch.nn.Linear(channels, channels, bias=False)
        self.edge_logits = torch.nn.Linear(num_basis, heads)
        self.value_filter = _mlp([num_basis, radial_hidden, channels])

    def forward(
        self,
        node_attrs: torch.Tensor,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor] = None,
        lammps_natoms: Tuple[int, int] = (0, 0),
        lammps_class: Optional[Any] = None,
        first_layer: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(message [n_atoms, C], skip [n_atoms, C])`` from node features [n_atoms, D]."""
        n_atoms, heads = node_feats.shape[0], self.heads
        width = self.channels // heads
        hidden = self.node_in(node_feats[:, self.columns])  # [n_atoms, C]
        sender, receiver = edge_index[0], edge_index[1]
        query = self.query(hidden).view(n_atoms, heads, width)
        key = self.key(hidden).view(n_atoms, heads, width)
        logits = (query[receiver] * key[sender]).sum(-1) / math.sqrt(width)  # [n_edges, H]
        logits = logits + self.edge_logits(edge_feats)
        logits = self.logit_bound * torch.tanh(logits / self.logit_bound)
        scores = torch.exp(logits) * self._envelope(cutoff, edge_feats)  # [n_edges, H]
        normaliser = 1.0 + _scatter_rows(scores, receiver, n_atoms)  # [n_atoms, H]
        weights = scores / normaliser[receiver]  # [n_edges, H]
        values = self.value(hidden)[sender] * self.value_filter(edge_feats)  # [n_edges, C]
        weighted = values.view(-1, heads, width) * weights.unsqueeze(-1)
        message = _scatter_rows(weighted.reshape(-1, self.channels), receiver, n_atoms)
        return message, hidden


class CartesianInteraction(_ScalarEdgeBlock):
    """A non-equivariant message-passing layer: an MLP on raw Cartesian edge directions.

    ``m_i = (1/n̄) Σ_j c_ij MLP([h_i, h_j, e_ij, û_ij])`` with û the Cartesian unit vector
    (x, y, z) of r_ij in the lab frame. Energies built on it are not rotation invariant; the
    equigrad loss and rotation augmentation (:mod:`macelerate.train`) teach invariance.

    Args:
        irreps_in: irreps of the incoming node features (its ``0e`` part is read).
        channels: C.
        num_basis: size of the radial basis ``edge_feats``.
        avg_num_neighbors: n̄, the message normaliser.
        hidden: width of the message MLP's hidden layer.
    """

    to_e3nn: torch.Tensor

    def __init__(
        self, irreps_in: Any, *, channels: int, num_basis: int, avg_num_neighbors: float,
        hidden: int = 64,
    ) -> None:  # fmt: skip
        super().__init__(irreps_in, channels=channels)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.message_mlp = _mlp([2 * channels + num_basis + 3, hidden, channels])
        self.register_buffer("to_e3nn", cartesian_basis(), persistent=False)  # [3, 3]

    def forward(
        self,
        node_attrs: torch.Tensor,
        node_feats: torch.Tensor,
        edge_attrs: torch.Tensor,
        edge_feats: torch.Tensor,
        edge_index: torch.Tensor,
        cutoff: Optional[torch.Tensor] = None,
        lammps_natoms: Tuple[int, int] = (0, 0),
        lammps_class: Optional[Any] = None,
        first_layer: bool = False,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(message [n_atoms, C], skip [n_atoms, C])`` from node features [n_atoms, D]."""
        hidden = self.node_in(node_feats[:, self.columns])  # [n_atoms, C]
        sender, receiver = edge_index[0], edge_index[1]
        direction = edge_attrs[:, 1:4]  # l = 1 harmonics: the unit vector, e3nn order and scale
        length = torch.linalg.vector_norm(direction, dim=-1, keepdim=True)
        direction = direction / length.clamp(min=1e-12)
        unit = direction @ self.to_e3nn.to(direction.dtype)  # [n_edges, 3] Cartesian (x, y, z)
        inputs = torch.cat([hidden[receiver], hidden[sender], edge_feats, unit], dim=-1)
        messages = self.message_mlp(inputs) * self._envelope(cutoff, edge_feats)
        message = _scatter_rows(messages, receiver, hidden.shape[0]) / self.avg_num_neighbors
        return message, hidden


class ScalarUpdate(torch.nn.Module):
    """The product replacement after a scalar layer: ``h' = h + MLP([m, h, one-hot(Z)])``.

    Attributes:
        irreps_out: ``"{C}x0e"``, read by :func:`macelerate.models.heads.node_feats_irreps`.
    """

    def __init__(self, *, channels: int, num_elements: int, hidden: int = 64) -> None:
        super().__init__()
        self.irreps_out = f"{channels}x0e"
        self.mlp = _mlp([2 * channels + num_elements, hidden, channels])

    def forward(
        self, node_feats: torch.Tensor, sc: Optional[torch.Tensor], node_attrs: torch.Tensor
    ) -> torch.Tensor:
        """New features from message ``node_feats`` and skip ``sc``, [n_atoms, C]."""
        assert sc is not None  # the scalar interactions always return their projected input
        update = self.mlp(torch.cat([node_feats, sc, node_attrs.to(node_feats.dtype)], dim=-1))
        return sc + update


class ScalarLinearReadout(torch.nn.Module):
    """Per-atom energy [n_atoms, 1] of a middle scalar layer: a linear map of its C features."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(channels, 1, bias=False)

    def forward(self, x: torch.Tensor, heads: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Energies [n_atoms, 1] (one head) from features [n_atoms, C]."""
        return self.linear(x)
