"""Tabulated radial functions in a form TorchScript compiles, for metatomic exports.

The tabulated lever (:mod:`macelerate.transforms.tabulate`) replaces each interaction's radial
MLP by a cubic table of the edge length, evaluated by a custom autograd kernel that TorchScript
cannot compile. :class:`ScriptableRadialTable` evaluates the same table (the same rows, built by
the same code) with ``embedding_bag``, whose gradient with respect to the interpolation weights
torch provides, so the engine's autograd forces and stress are the gradient of the tabulated
energy. :class:`ScriptableLengthEmbedding` hands the edge lengths to the tables, as the runtime's
:class:`~macelerate.runtime.tabulated_radial.LengthRadialEmbedding` does.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

# ruff: noqa: UP006, UP035, UP045

import copy
from typing import Any, List, Optional, Tuple

import torch

from macelerate.runtime.tabulated_radial import LengthRadialEmbedding, TabulatedRadialMLP


class ScriptableEdgeFeatures(torch.nn.Module):
    """mace's radial embedding of lengths [n, 1] -> features [n, n_basis] (Bessel basis, times
    the polynomial envelope when the embedding applies it), for lengths below the table."""

    def __init__(self, radial_embedding: Any):
        super().__init__()
        self.bessel_fn = radial_embedding.bessel_fn
        self.cutoff_fn = radial_embedding.cutoff_fn
        self.apply_cutoff = bool(getattr(radial_embedding, "apply_cutoff", True))

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        features = self.bessel_fn(lengths)
        if self.apply_cutoff:
            features = features * self.cutoff_fn(lengths)
        return features


class ScriptableRadialTable(torch.nn.Module):
    """A :class:`TabulatedRadialMLP`: edge lengths [n_edges, 1] Å -> tensor-product weights
    [n_edges, out], from the same cubic table; lengths in (0, r_min) use the exact MLP."""

    table: torch.Tensor  # [4 * n_knots, out] cubic coefficients in powers of t
    last_weight: torch.Tensor  # [hidden, out]

    def __init__(self, tabulated: TabulatedRadialMLP, features: ScriptableEdgeFeatures):
        super().__init__()
        self.register_buffer("table", tabulated.output_table.detach().clone())
        self.register_buffer("last_weight", tabulated.last_weight.detach().clone())
        self.exact_hidden = tabulated.exact_hidden
        self.features = features
        self.r_min = float(tabulated.r_min)
        self.r_max = float(tabulated.r_max)
        self.spacing = float(tabulated.spacing)
        self.n_knots = int(tabulated.n_knots)

    @torch.jit.unused
    def columns(self, columns: List[int]) -> "ScriptableRadialTable":
        """A copy computing only output ``columns`` (a sliced table and last layer)."""
        narrowed = copy.deepcopy(self)
        index = torch.tensor(columns, dtype=torch.long, device=self.table.device)
        narrowed.table = self.table.index_select(1, index).contiguous()
        narrowed.last_weight = self.last_weight.index_select(1, index).contiguous()
        return narrowed

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        r = lengths.squeeze(-1)
        position = (r.clamp(max=self.r_max) - self.r_min) / self.spacing
        interval = position.detach().floor().clamp(0.0, float(self.n_knots - 2))
        beyond = torch.full_like(interval, float(self.n_knots - 1))
        interval = torch.where(r >= self.r_max, beyond, interval)  # the constant cubic
        t = position - interval
        t2 = t * t
        weights = torch.stack([torch.ones_like(t), t, t2, t2 * t], dim=1)  # [n, 4]
        rows = (4 * interval.long()).unsqueeze(1) + torch.arange(4, device=r.device)
        table = self.table.to(weights.dtype)
        out = torch.nn.functional.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")
        below = (r < self.r_min) & (r > 0)
        if bool(below.any()):  # rare: atoms closer than the table reaches
            index = below.nonzero().squeeze(1)
            exact = self.exact_hidden(self.features(lengths.index_select(0, index)))
            out = out.index_copy(0, index, exact @ self.last_weight.to(weights.dtype))
        return out


class ScriptableLengthEmbedding(torch.nn.Module):
    """Drop-in ``radial_embedding`` returning ``(lengths [n, 1], envelope or None)``: the
    envelope only when the embedding leaves it to the interaction (``apply_cutoff=False``)."""

    def __init__(self, radial_embedding: Any):
        super().__init__()
        self.cutoff_fn = radial_embedding.cutoff_fn
        self.apply_cutoff = bool(getattr(radial_embedding, "apply_cutoff", True))

    def forward(
        self,
        edge_lengths: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        atomic_numbers: torch.Tensor,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if self.apply_cutoff:
            return edge_lengths, None
        return edge_lengths, self.cutoff_fn(edge_lengths)


def scriptable_tabulated(tabulated_model: Any) -> Any:
    """``tabulated_model`` (a mace backbone the tabulated lever built, owned) with its tables and
    length embedding in the scriptable forms above, in place; returned for chaining.

    A smooth neighbour cap around the length embedding stays: it hands the tables' lengths
    through and its weights reach the interactions as ``cutoff``, which multiplies the tables'
    output.

    Raises:
        ValueError: the model was not tabulated (no length embedding).
    """
    parent, name = tabulated_model, "radial_embedding"
    embedding = getattr(parent, name)
    while not isinstance(embedding, LengthRadialEmbedding) and isinstance(
        getattr(embedding, "inner", None), torch.nn.Module
    ):
        parent, name, embedding = embedding, "inner", embedding.inner
    if not isinstance(embedding, LengthRadialEmbedding):
        raise ValueError(
            f"radial embedding {type(embedding).__name__} is not the tabulated lever's"
        )
    inner = embedding.inner
    for block in tabulated_model.interactions:
        block.conv_tp_weights = ScriptableRadialTable(
            block.conv_tp_weights, ScriptableEdgeFeatures(inner)
        )
    setattr(parent, name, ScriptableLengthEmbedding(inner))
    return tabulated_model
