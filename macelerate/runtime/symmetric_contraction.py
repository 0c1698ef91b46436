"""MACE's symmetric contraction as per-element polynomial tables and batched matrix products.

mace-torch evaluates each product basis (MACE paper, Eqs. 10-11), for node b of element e_b and
channel c, as::

    B[b, c, m] = sum_nu sum_i sum_p U_nu[m, i_1..i_nu, p] W_nu[e_b, p, c] x[b,c,i_1]..x[b,c,i_nu]

with opt_einsum contractions that are generic in the element one-hot ``y[b, e]``; the tensors it
forms scale with the number of nodes times the size of the dense U tables. Here the coupling
coefficients and the weights are multiplied first, once per element (independent of the graph)::

    T_nu[e, c, m, i_1..i_nu] = sum_p U_nu[m, i_1..i_nu, p] W_nu[e, p, c]

and the polynomial is evaluated for the nodes of each element with channels as the batch of
matrix products: ``v = sum_nu T_nu . x^(nu-1)`` (outer powers of x, one well-shaped product per
order), then ``B[m] = sum_i x_i v[m, i]``. This is the same sum in another order: results equal
mace-torch's to floating-point rounding, forward and backward (and double backward: everything
is differentiable torch operations). With frozen weights (inference) the tables are computed
once and cached.

Input components that are known to be exactly zero (``live_components``; for example the
higher-L features of an interaction whose linear maps them to zero) are dropped from the tables,
which is exact and shrinks ``i``.
"""

from __future__ import annotations

import itertools
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
        self._cache: tuple[CacheKey, dict[int, torch.Tensor]] | None = None

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

    def tables(self, elements: torch.Tensor) -> dict[int, torch.Tensor]:
        """T_nu for ``elements``: {nu: [n_present, c, i^(nu-1), m * i]}.

        Row index: the first nu - 1 input indices (contracted with the outer power of ``x``);
        column: the output component and the last input index (contracted with ``x`` last).
        Cached while no weight requires gradients and the weights are the same tensors, unchanged
        (identity and version counter: a new tensor reusing freed memory never matches).
        """
        weights = [self._weight(nu) for nu in range(1, self.correlation + 1)]
        frozen = not any(w.requires_grad for w in weights)
        key: CacheKey = (*weights, *(w._version for w in weights), tuple(elements.tolist()))
        cached = self._cache
        if frozen and cached is not None and _same_key(cached[0], key):
            return cached[1]
        n_live = int(self.live.numel())
        tables = {}
        for nu, weight in zip(range(1, self.correlation + 1), weights):
            coupling = _symmetrized(self._coupling(nu).to(weight.dtype), nu, n_live)  # [m, q, P]
            table = torch.einsum("mqp,epc->ecmq", coupling, weight.index_select(0, elements))
            shape = (len(elements), self.num_features, self.dim_out, n_live ** (nu - 1), n_live)
            # [e, c, m, rows, i] -> [e, c, rows, m, i]
            tables[nu] = (
                table.reshape(shape)
                .transpose(2, 3)
                .reshape(
                    len(elements), self.num_features, n_live ** (nu - 1), self.dim_out * n_live
                )
            )
        if frozen:
            self._cache = (key, tables)
        return tables

    def evaluate(self, x: torch.Tensor, tables: dict[int, torch.Tensor], slot: int) -> torch.Tensor:
        """The polynomial for the nodes of one element.

        ``B[m] = sum_i x_i v[m, i]`` with ``v = sum_nu T_nu . x^(nu - 1)`` (outer powers of x):
        one well-shaped matrix product per order instead of one small contraction per index.
        Nodes are the innermost axis, so the outer powers and the final sum run over long
        contiguous rows (with few components, 9 for max_ell 2, a node-major layout spends most
        of its time on broadcasting 9-element rows).

        Args:
            x: [c, i_live, B] features of B nodes of the element, channels first, nodes last.
            tables: from :meth:`tables`.
            slot: index of the element in the ``elements`` the tables were built for.

        Returns:
            [c, m, B]
        """
        channels, n_live, n_nodes = x.shape
        v = tables[1][slot].transpose(1, 2).expand(channels, -1, n_nodes)  # [c, m * i, B]
        power = x
        for nu in range(2, self.correlation + 1):
            v = torch.baddbmm(v, tables[nu][slot].transpose(1, 2), power)  # + T_nu . x^(nu-1)
            if nu == 2 and self.correlation > 2:  # x (x) x, rows of T_3 symmetric
                power = SymmetricOuterSquare.apply(x)
            elif nu < self.correlation:  # next outer power: [c, i^nu, B]
                power = (power.unsqueeze(2) * x.unsqueeze(1)).reshape(channels, -1, n_nodes)
        v = v.view(channels, self.dim_out, n_live, n_nodes)
        return (v * x.unsqueeze(1)).sum(2)


def _symmetrized(coupling: torch.Tensor, nu: int, n: int) -> torch.Tensor:
    """The coupling [m, n^nu, P] averaged over all permutations of its nu input indices.

    The polynomial is unchanged (the product of the x's is symmetric); symmetric tables make the
    gradient of ``x (x) x`` one contraction instead of two (:class:`SymmetricOuterSquare`).
    """
    if nu < 2:
        return coupling
    full = coupling.reshape(coupling.shape[0], *([n] * nu), coupling.shape[-1])
    permutations = list(itertools.permutations(range(1, nu + 1)))
    total = full.permute(0, *permutations[0], nu + 1)
    for order in permutations[1:]:
        total = total + full.permute(0, *order, nu + 1)
    return (total / len(permutations)).reshape(coupling.shape)


class SymmetricOuterSquare(torch.autograd.Function):
    """``x (x) x``: [c, i, B] -> [c, i * i, B], for gradients that are symmetric in the pair.

    Used where the outer square only meets tables symmetric in its two indices: then
    ``grad_x = 2 * sum_j g[j, k] x_j``, one contraction instead of autograd's two. The backward
    is built from differentiable operations (double backward works).
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        channels, n, n_nodes = x.shape
        return (x.unsqueeze(2) * x.unsqueeze(1)).reshape(channels, n * n, n_nodes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        channels, n, n_nodes = x.shape
        square = grad.reshape(channels, n, n, n_nodes)
        return 2.0 * (square * x.unsqueeze(2)).sum(1)


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
