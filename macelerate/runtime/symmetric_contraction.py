"""MACE's symmetric contraction as a sparse polynomial: only the monomials its couplings use.

mace-torch evaluates each product basis (MACE paper, Eqs. 10-11), for node b of element e_b and
channel c, as::

    B[b, c, m] = sum_nu sum_i sum_p U_nu[m, i_1..i_nu, p] W_nu[e_b, p, c] x[b,c,i_1]..x[b,c,i_nu]

with opt_einsum contractions over the dense U tables, which are mostly zero (selection rules:
for GO-MACE's scalar output from 16 components at correlation 3, 352 of the 4,096 entries of U_3
are non-zero). The product x_i1..x_inu does not depend on the order of its indices, so the sum
collapses onto the distinct monomials (sorted index tuples) whose summed coupling is non-zero::

    C_nu[m, n, p]  = sum over the orderings (i_1..i_nu) of monomial n of U_nu[m, i_1..i_nu, p]
    K[e, c, m, n]  = sum_p C_nu[m, n, p] W_nu[e, p, c]         (per element, graph-independent)
    B[b, c, m]     = sum_n K[e_b, c, m, n] prod_{k in n} x[b, c, k]

GO-MACE's first product needs 94 monomials (1 + 16 + 77) instead of 4,368 dense products per
node and channel. The monomials are gathered from the features of each element's nodes (nodes
innermost, so every operation runs over long contiguous rows) and weighted with one batched
matrix product per element. This is the same sum in another order: results equal mace-torch's
to floating-point rounding, forward and backward (and double backward: everything is
differentiable torch operations). With frozen weights (inference) K is computed once and cached.

Input components that are known to be exactly zero (``live_components``; for example the
higher-L features of an interaction whose linear maps them to zero) are dropped before the
monomials are formed, which is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch

from macelerate.mace.contract import SYMMETRIC_CONTRACTION_CLASS

CacheKey = tuple[object, ...]


class FastContraction(torch.nn.Module):
    """One output irrep of a symmetric contraction (mace-torch ``Contraction``).

    Parameters and buffers keep mace-torch's names (``weights_max``, ``weights.{k}``,
    ``U_matrix_{nu}``, ``*_zeroed``), so the state dict is the source module's.

    Args:
        source: the mace-torch ``Contraction`` (its tensors are shared, not copied).
        live_components: indices of the input components ``i`` that may be non-zero (default:
            all).
    """

    live: torch.Tensor
    weights_max: torch.Tensor
    weights: Any

    def __init__(self, source: Any, *, live_components: Sequence[int] | None = None) -> None:
        super().__init__()
        self.correlation = int(source.correlation)
        self.num_features = int(source.num_features)
        self.weights_max = source.weights_max
        self.weights = source.weights
        for name, buffer in source.named_buffers(recurse=False):
            self.register_buffer(name, buffer)
        u_max = getattr(self, f"U_matrix_{self.correlation}")
        # mace squeezes the output axis of scalar outputs: [i]*nu + [P] or [m] + [i]*nu + [P]
        self.dim_out = 1 if u_max.dim() == self.correlation + 1 else int(u_max.shape[0])
        self.n_components = int(u_max.shape[-2])
        live = range(self.n_components) if live_components is None else live_components
        live_index = torch.as_tensor(list(live), dtype=torch.long)
        self.register_buffer("live", live_index, persistent=False)
        for nu in range(1, self.correlation + 1):
            index, coupling = _monomials(self._coupling(nu), nu, int(live_index.numel()))
            self.register_buffer(f"monomials_{nu}", index, persistent=False)
            self.register_buffer(f"monomial_coupling_{nu}", coupling, persistent=False)
        self._cache: tuple[CacheKey, torch.Tensor] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_cache"] = None  # copies and pickles recompute their tables
        return state

    def _weight(self, nu: int) -> torch.Tensor:
        """W_nu: [n_elements, P_nu, channels] (mace stores nu = N-1 ... 1 in ``weights``)."""
        if nu == self.correlation:
            return self.weights_max
        return self.weights[self.correlation - 1 - nu]

    def _coupling(self, nu: int) -> torch.Tensor:
        """U_nu restricted to the live components: [m, i_live^nu, P_nu]."""
        u = getattr(self, f"U_matrix_{nu}")
        u = u.reshape(self.dim_out, *([self.n_components] * nu), u.shape[-1])
        for axis in range(1, nu + 1):
            u = u.index_select(axis, self.live)
        return u.reshape(self.dim_out, -1, u.shape[-1])

    def tables(self, elements: torch.Tensor) -> torch.Tensor:
        """K for ``elements``: [n_present, c, m, n_monomials], all orders concatenated.

        Cached while no weight requires gradients and the weights are the same tensors, unchanged
        (identity and version counter: a new tensor reusing freed memory never matches).
        """
        weights = [self._weight(nu) for nu in range(1, self.correlation + 1)]
        frozen = not any(w.requires_grad for w in weights)
        key: CacheKey = (*weights, *(w._version for w in weights), tuple(elements.tolist()))
        cached = self._cache
        if frozen and cached is not None and _same_key(cached[0], key):
            return cached[1]
        blocks = [
            torch.einsum(
                "mnp,epc->ecmn",
                getattr(self, f"monomial_coupling_{nu}").to(weight.dtype),
                weight.index_select(0, elements),
            )
            for nu, weight in zip(range(1, self.correlation + 1), weights)
        ]
        tables = torch.cat(blocks, dim=3)
        if frozen:
            self._cache = (key, tables)
        return tables

    def monomials(self, x: torch.Tensor) -> torch.Tensor:
        """[c, n_monomials, B]: the products ``prod_{k in n} x[:, k]`` of every order, from
        ``x`` [c, i_live, B]."""
        terms = []
        for nu in range(1, self.correlation + 1):
            index = getattr(self, f"monomials_{nu}")  # [n_monomials, nu]
            term = x.index_select(1, index[:, 0])
            for position in range(1, nu):
                term = term * x.index_select(1, index[:, position])
            terms.append(term)
        return torch.cat(terms, dim=1) if len(terms) > 1 else terms[0]

    def evaluate(self, x: torch.Tensor, tables: torch.Tensor, slot: int) -> torch.Tensor:
        """The polynomial for the nodes of one element: ``B[c, m] = sum_n K[c, m, n] x^n``.

        Args:
            x: [c, i_live, B] features of B nodes of the element, channels first, nodes last.
            tables: from :meth:`tables`.
            slot: index of the element in the ``elements`` the tables were built for.

        Returns:
            [c, m, B]
        """
        return torch.bmm(tables[slot], self.monomials(x))


def _monomials(coupling: torch.Tensor, nu: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct order-``nu`` monomials a coupling uses, and their summed couplings.

    Args:
        coupling: U_nu on the live components, [m, n^nu, P] (index tuples row-major).
        nu: the order.
        n: live components.

    Returns:
        (index [n_monomials, nu] sorted component indices of each monomial, coupling
        [m, n_monomials, P] summed over the orderings of each), keeping the monomials whose
        summed coupling is not exactly zero for some (m, p).
    """
    grid = torch.arange(n, device=coupling.device)
    tuples = torch.cartesian_prod(*([grid] * nu)) if nu > 1 else grid[:, None]  # [n^nu, nu]
    unique, inverse = torch.unique(tuples.sort(dim=1).values, dim=0, return_inverse=True)
    summed = torch.zeros(
        (coupling.shape[0], unique.shape[0], coupling.shape[-1]),
        dtype=coupling.dtype, device=coupling.device,
    ).index_add_(1, inverse, coupling)  # fmt: skip
    used = summed.abs().amax(dim=(0, 2)) > 0
    return unique[used], summed[:, used]


def _same_key(a: CacheKey, b: CacheKey) -> bool:
    """Tensors compared by identity, everything else by value."""
    return len(a) == len(b) and all(
        x is y if isinstance(x, torch.Tensor) else x == y for x, y in zip(a, b)
    )


class FastSymmetricContraction(torch.nn.Module):
    """Drop-in for mace-torch's ``SymmetricContraction`` (same call, same state dict).

    Call: ``(x [n_nodes, channels, i], node_attrs [n_nodes, n_elements] one-hot) ->
    [n_nodes, sum over output irreps of channels * (2L + 1)]``, channel-major per output irrep
    as mace-torch returns it.

    Args:
        source: the mace-torch ``SymmetricContraction``.
        live_components: input components that may be non-zero (see module docstring).
    """

    live: torch.Tensor

    def __init__(self, source: Any, *, live_components: Sequence[int] | None = None) -> None:
        super().__init__()
        self.irreps_in = getattr(source, "irreps_in", None)
        self.irreps_out = getattr(source, "irreps_out", None)
        self.contractions = torch.nn.ModuleList(
            FastContraction(c, live_components=live_components) for c in source.contractions
        )
        first = cast(FastContraction, self.contractions[0])
        self.register_buffer("live", first.live.clone(), persistent=False)

    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        n_nodes = x.shape[0]
        elements = node_attrs.argmax(dim=1)  # one-hot element of every node
        order = torch.argsort(elements, stable=True)
        counts = torch.bincount(elements, minlength=node_attrs.shape[1]).tolist()
        present = [e for e, count in enumerate(counts) if count]
        if self.live.numel() != x.shape[2]:
            x = x.index_select(2, self.live)
        grouped = x.index_select(0, order).permute(1, 2, 0)  # [c, i, n], nodes by element
        present_t = torch.tensor(present, dtype=torch.long, device=x.device)
        pieces = []
        contractions = cast(list[FastContraction], list(self.contractions))
        for contraction in contractions:
            tables = contraction.tables(present_t)
            outs, start = [], 0
            for slot, element in enumerate(present):
                stop = start + counts[element]
                nodes = grouped[:, :, start:stop].contiguous()
                outs.append(contraction.evaluate(nodes, tables, slot))
                start = stop
            out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]  # [c, m, n]
            pieces.append(out.permute(2, 0, 1).reshape(n_nodes, -1))
        result = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n_nodes, device=x.device)
        return result.index_select(0, inverse)


def supports_fast_contraction(module: torch.nn.Module) -> bool:
    """True for mace-torch e3nn ``SymmetricContraction`` modules (not cuEquivariance ones)."""
    contractions = getattr(module, "contractions", None)
    if type(module).__name__ != SYMMETRIC_CONTRACTION_CLASS or contractions is None:
        return False
    needed = ("correlation", "num_features", "weights_max", "weights")
    return all(all(hasattr(c, name) for name in needed) for c in contractions)
