"""Radial MLPs replaced by cubic Hermite tables of the edge length (an approximate lever).

In a mace-torch interaction the tensor-product weights of an edge depend on its length alone::

    w(r) = MLP(radial_embedding(r))          # [n_edges, weight_numel]

(Bessel basis times the polynomial envelope, then an e3nn ``FullyConnectedNet``). A
:class:`TabulatedRadialMLP` evaluates the MLP's non-linear part, the hidden features before its
last (linear) layer, from a table on a uniform grid of lengths with cubic Hermite interpolation
(values and exact derivatives at the knots), then applies the last layer exactly::

    h(r) ~ H_k(t),  w(r) = h(r) @ W_last

Hermite interpolation is linear in the knot values and slopes, so the same interpolant of the
outputs is a table of ``h @ W_last`` at the knots: the forward pass evaluates that table
directly (:mod:`macelerate.runtime.spline_rows`, four table rows per edge, no matrix product),
and the hidden table serves the error measurement. The interpolant is C1 in r, and forces are
its exact derivative (autograd through ``t``), so energy is conserved; only its value differs
from the MLP's, by an amount that shrinks as ``spacing**4``.
:func:`macelerate.transforms.tabulate_radial` picks the spacing from a measured force error.

Lengths below the table (``r < r_min``, atoms closer than any bonded pair) are evaluated with the
exact MLP; lengths above ``r_max`` are clamped to the last knot, where the embedding and so the
hidden features are zero or the envelope multiplies them by zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from macelerate.runtime.spline_rows import power_weights, spline_rows


def hidden_and_last_layer(mlp: Any) -> tuple[torch.nn.Module, torch.Tensor]:
    """Split an e3nn ``FullyConnectedNet`` into (all layers but the last, last weight [h, out]).

    The last layer of mace's radial MLPs is linear (no activation); its effective weight
    includes e3nn's normalisation ``1 / sqrt(h_in * var_in / var_out)``.
    """
    layers = [m for name, m in mlp.named_children() if name.startswith("layer")]
    if not layers or getattr(layers[-1], "act", None) is not None:
        raise ValueError("radial MLP must be an e3nn FullyConnectedNet with a linear last layer")
    return torch.nn.Sequential(*layers[:-1]), linear_layer_weight(layers[-1]).detach()


def linear_layer_weight(layer: Any) -> torch.Tensor:
    """The effective [h_in, h_out] weight of an e3nn ``FullyConnectedNet`` layer without an
    activation: ``weight / sqrt(h_in * var_in / var_out)``, as e3nn applies it (differentiable)."""
    return layer.weight / (layer.h_in * layer.var_in / layer.var_out) ** 0.5


class TabulatedRadialMLP(torch.nn.Module):
    """Drop-in ``conv_tp_weights``: takes edge lengths [n_edges, 1] instead of the embedding.

    Args:
        mlp: the interaction's radial MLP (e3nn ``FullyConnectedNet``; copied, not changed).
        embedding: ``r [n, 1] -> edge features [n, n_basis]`` (the model's radial embedding).
        r_min: Å, first knot.
        r_max: Å, last knot (the model cutoff).
        n_knots: knots on the uniform grid, at least 2.

    Buffers, in the MLP's dtype: ``output_table`` [4 * n_knots, out] and ``hidden_table``
    [4 * n_knots, hidden] (:func:`_cubic_table`), the outputs' and the hidden features' cubics;
    the last layer's weight [hidden, out].
    """

    output_table: torch.Tensor
    hidden_table: torch.Tensor
    last_weight: torch.Tensor

    def __init__(
        self,
        mlp: torch.nn.Module,
        embedding: torch.nn.Module,
        *,
        r_min: float,
        r_max: float,
        n_knots: int,
    ) -> None:
        super().__init__()
        if n_knots < 2 or not 0 < r_min < r_max:
            raise ValueError(f"need n_knots >= 2 and 0 < r_min < r_max, got {n_knots}, {r_min}")
        hidden, last = hidden_and_last_layer(mlp)
        dtype = last.dtype
        self.out_features = int(last.shape[1])
        self.r_min, self.r_max, self.n_knots = float(r_min), float(r_max), int(n_knots)
        self.spacing = (self.r_max - self.r_min) / (self.n_knots - 1)
        knots = torch.linspace(self.r_min, self.r_max, self.n_knots, dtype=torch.float64)
        values, slopes = _values_and_slopes(hidden, embedding, knots)
        slopes = slopes * self.spacing
        self.register_buffer("hidden_table", _cubic_table(values, slopes).to(dtype))
        outputs = _cubic_table(values @ last.double(), slopes @ last.double())
        self.register_buffer("output_table", outputs.to(dtype))
        self.register_buffer("last_weight", last.clone())
        self.exact_hidden = hidden  # for lengths below the table
        self.embedding = embedding
        self._blocks_cache: tuple[Any, torch.Tensor | None, tuple[torch.Tensor, ...]] | None = None

    def forward(
        self,
        lengths: torch.Tensor,
        scale: torch.Tensor | None = None,
        widths: Sequence[int] | None = None,
        groups: torch.Tensor | None = None,
        group_scales: torch.Tensor | None = None,
    ) -> Any:
        """``lengths`` [n_edges, 1] Å -> tensor-product weights [n_edges, out_features].

        ``scale`` [n_edges, 1] (an envelope, a smooth cap's weight) multiplies each row; it is
        folded into the four interpolation weights instead of the [n_edges, out] result.
        With ``widths`` (summing to ``out_features``), the weights come as a tuple of column
        blocks [n_edges, width] whose gradients are taken one by one: no [n_edges, out]
        gradient is assembled in the backward pass.

        With ``groups`` [n_edges] (int64) and ``group_scales`` [n_groups, out_features] (no
        gradient), row e is also multiplied column by column by ``group_scales[groups[e]]``:
        the products are folded into one table per group (:meth:`output_blocks`), so they cost
        nothing per edge.
        """
        if group_scales is not None and (groups is None or group_scales.requires_grad):
            raise ValueError("group_scales needs groups and must not require grad")
        blocks = self._interpolate(
            lengths, scale, widths, outputs=True, groups=groups, group_scales=group_scales
        )
        return blocks[0] if widths is None else blocks

    def output_blocks(
        self, widths: Sequence[int] | None = None, group_scales: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``output_table`` as contiguous column blocks of ``widths`` (one block without), each
        scaled column-wise by every row of ``group_scales`` [n_groups, out] and stacked
        ([n_groups * 4 * n_knots, width]) when given.

        The last blocks are kept while the table, the widths and the scales' values stay the
        same (a frozen model hands in equal scales every step), so a step copies nothing.
        """
        table = self.output_table
        key = (table, None if widths is None else tuple(widths))
        cached = self._blocks_cache
        if cached is not None and cached[0][0] is table and cached[0][1] == key[1]:
            if _same_values(cached[1], group_scales):
                return cached[2]
        split = [table] if widths is None else list(table.split(list(widths), dim=1))
        if group_scales is None:
            blocks = tuple(block.contiguous() for block in split)
        else:
            scales = group_scales.to(table.dtype).split([b.shape[1] for b in split], dim=1)
            blocks = tuple(
                (block.unsqueeze(0) * scale.unsqueeze(1)).reshape(-1, block.shape[1])
                for block, scale in zip(split, scales)
            )
        kept = None if group_scales is None else group_scales.detach().clone()
        self._blocks_cache = (key, kept, blocks)
        return blocks

    def hidden(self, lengths: torch.Tensor) -> torch.Tensor:
        """The interpolated hidden features [n_edges, hidden] of ``lengths`` [n_edges, 1] Å."""
        return self._interpolate(lengths, None, None, outputs=False)[0]

    def _interpolate(
        self,
        lengths: torch.Tensor,
        scale: torch.Tensor | None,
        widths: Sequence[int] | None,
        *,
        outputs: bool,
        groups: torch.Tensor | None = None,
        group_scales: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """The outputs (or hidden features) at ``lengths``, in ``widths`` column blocks; with
        ``group_scales``, from the group tables of :meth:`output_blocks` (row e: ``groups[e]``)."""
        tables = self.output_blocks(widths, group_scales) if outputs else (self.hidden_table,)
        r = lengths.squeeze(-1)
        position = (r.clamp(max=self.r_max) - self.r_min) / self.spacing
        interval = position.detach().floor().clamp(0, self.n_knots - 2)
        interval = torch.where(r >= self.r_max, self.n_knots - 1, interval)  # the constant cubic
        weights = power_weights(position - interval)  # [n, 4]
        if scale is not None:
            weights = weights * scale
        rows = interval.long() if groups is None else interval.long() + groups * self.n_knots
        blocks = spline_rows(weights, rows, tables)
        below = (r < self.r_min) & (r > 0)  # length 0: a padding slot, whose value is unused
        if bool(below.any()):  # rare: atoms closer than the table reaches
            index = below.nonzero().squeeze(1)
            exact = self.exact_hidden(self.embedding(lengths.index_select(0, index)))
            exact = exact.to(weights.dtype)
            if outputs:
                exact = exact @ self.last_weight
            if scale is not None:
                exact = exact * scale.index_select(0, index)
            if group_scales is not None and groups is not None:
                exact = exact * group_scales.to(exact.dtype)[groups.index_select(0, index)]
            parts = (exact,) if widths is None else exact.split(list(widths), 1)
            blocks = tuple(block.index_copy(0, index, part) for block, part in zip(blocks, parts))
        return blocks

    def extra_repr(self) -> str:
        return (
            f"r=[{self.r_min}, {self.r_max}] Å, {self.n_knots} knots "
            f"(spacing {self.spacing:.2e} Å), out={self.out_features}"
        )


def _same_values(kept: torch.Tensor | None, given: torch.Tensor | None) -> bool:
    """Both None, or equal values of the same shape, dtype and device."""
    if kept is None or given is None:
        return kept is None and given is None
    same_kind = (kept.shape, kept.dtype, kept.device) == (given.shape, given.dtype, given.device)
    return same_kind and torch.equal(kept, given)


def _cubic_table(values: torch.Tensor, slopes: torch.Tensor) -> torch.Tensor:
    """The cubic Hermite interpolant as a :func:`spline_rows` table: [4 * n, h].

    ``values`` and ``slopes`` (derivatives times the spacing) are [n, h] at the knots. Rows
    ``4k .. 4k + 3`` hold interval k's ``c0 + c1 t + c2 t^2 + c3 t^3`` (matching both at t = 0
    and t = 1); the last four rows hold the constant value at the last knot, for lengths at and
    beyond it.
    """
    v0, v1, s0, s1 = values[:-1], values[1:], slopes[:-1], slopes[1:]
    c2 = 3 * (v1 - v0) - 2 * s0 - s1
    c3 = 2 * (v0 - v1) + s0 + s1
    cubics = torch.stack([v0, s0, c2, c3], dim=1)  # [n - 1, 4, h]
    beyond = torch.zeros_like(cubics[:1])
    beyond[0, 0] = values[-1]
    return torch.cat([cubics, beyond]).reshape(-1, values.shape[1])


def _values_and_slopes(
    hidden: torch.nn.Module, embedding: torch.nn.Module, knots: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden features and their exact r-derivatives at ``knots``, in float64: ([n, h], [n, h])."""
    import copy

    hidden64 = copy.deepcopy(hidden).to(torch.float64)
    embedding64 = copy.deepcopy(embedding).to(torch.float64)
    r = knots.clone().unsqueeze(-1).requires_grad_(True)
    with torch.enable_grad():
        values = hidden64(embedding64(r))  # [n, h]
        slopes = torch.stack(
            [
                torch.autograd.grad(values[:, j].sum(), r, retain_graph=True)[0].squeeze(-1)
                for j in range(values.shape[1])
            ],
            dim=1,
        )
    return values.detach(), slopes.detach()


class EdgeFeatures(torch.nn.Module):
    """``r [n, 1] -> edge features [n, n_basis]`` of a mace ``RadialEmbeddingBlock``."""

    def __init__(self, radial_embedding: torch.nn.Module) -> None:
        super().__init__()
        if hasattr(radial_embedding, "distance_transform"):
            raise ValueError(
                "this model's radial embedding depends on the elements of each edge "
                "(distance transform), not on its length alone: it cannot be tabulated"
            )
        self.inner = radial_embedding

    def forward(self, lengths: torch.Tensor) -> torch.Tensor:
        features, _ = self.inner(lengths, None, None, None)
        return features


class LengthRadialEmbedding(torch.nn.Module):
    """Drop-in ``radial_embedding`` that hands the edge lengths to tabulated radial MLPs.

    Returns ``(lengths [n, 1], cutoff)`` where ``cutoff`` is what the inner embedding returns
    (None when it applies the envelope itself, which the tables then include).
    """

    DELEGATED = ("bessel_fn", "cutoff_fn", "apply_cutoff", "out_dim")
    inner: Any

    def __init__(self, radial_embedding: torch.nn.Module) -> None:
        super().__init__()
        self.inner = radial_embedding

    def __getattr__(self, name: str):
        if name in LengthRadialEmbedding.DELEGATED:
            return getattr(self._modules["inner"], name)
        return super().__getattr__(name)

    def forward(
        self,
        edge_lengths: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        atomic_numbers: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(self.inner, "apply_cutoff", True):
            return edge_lengths, None
        return edge_lengths, self.inner.cutoff_fn(edge_lengths)
