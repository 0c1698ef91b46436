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
differentiable torch operations). This form runs while the weights train.

With frozen weights (inference) the polynomial is evaluated through its gradient instead. Each
order is homogeneous, so by Euler's theorem ``P_nu(x) = (1/nu) sum_k x_k dP_nu/dx_k``, and every
``dP_nu/dx_k`` is a polynomial of order nu - 1 with tables ``D[e, c, m, k, n']`` derived from K::

    G[b, c, m, k] = sum_n' D[e_b, c, m, k, n'] x^n'           (one batched product per element)
    B[b, c, m]    = sum_k x[b, c, k] sum_nu G_nu[b, c, m, k] / nu
    dB/dx_k       = sum_nu G_nu[b, c, m, k]                   (kept for the backward pass)

The forward pass thus computes the Jacobian the forces need with the same matrix product, and
the backward pass is one product with it: no per-monomial products are stored or differentiated
(forward + backward 1.6x faster on GO-MACE's first product, ``benchmarks/compare_contraction.py``).
Double backward (Hessians) re-derives the Jacobian with differentiable operations. The tables D
are computed once per element and cached while the weights keep their values.

Input components that are known to be exactly zero (``live_components``; for example the
higher-L features of an interaction whose linear maps them to zero) are dropped before the
monomials are formed, which is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        self.n_live = int(live_index.numel())
        monomials = []
        for nu in range(1, self.correlation + 1):
            index, coupling = _monomials(self._coupling(nu), nu, self.n_live)
            self.register_buffer(f"monomials_{nu}", index, persistent=False)
            self.register_buffer(f"monomial_coupling_{nu}", coupling, persistent=False)
            monomials.append((index, coupling))
        lower, derivative = _derivative_couplings(monomials, self.n_live)
        self.lower_orders = len(lower)
        for q, index in enumerate(lower):
            self.register_buffer(f"lower_monomials_{q}", index, persistent=False)
        for nu, coupling in enumerate(derivative, start=1):
            self.register_buffer(f"derivative_coupling_{nu}", coupling, persistent=False)
        self._derivative_cache: tuple[CacheKey, tuple[torch.Tensor, ...]] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_derivative_cache"] = None  # copies and pickles recompute their tables
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

        Not cached: this form runs while the weights train (frozen weights take
        :meth:`derivative_tables`, which are).
        """
        blocks = []
        for nu in range(1, self.correlation + 1):
            weight = self._weight(nu).index_select(0, elements)  # [n_present, P, c]
            coupling = getattr(self, f"monomial_coupling_{nu}").to(weight.dtype)
            blocks.append(torch.einsum("mnp,epc->ecmn", coupling, weight))
        return torch.cat(blocks, dim=3)

    def monomials(self, x: torch.Tensor) -> torch.Tensor:
        """[c, n_monomials, B]: the products ``prod_{k in n} x[:, k]`` of every order, from
        ``x`` [c, i_live, B]."""
        terms = [_products(x, getattr(self, f"monomials_{nu}"))
                 for nu in range(1, self.correlation + 1)]  # fmt: skip
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

    def polynomials(self, elements: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
        """``evaluate(x [c, k, B], slot) -> [c, m, B]`` for the nodes of ``elements[slot]``:
        the monomial form while weights train, the gradient form when they are frozen."""
        if self.frozen():
            derivatives = self.derivative_tables(elements)
            return lambda x, slot: self.evaluate_frozen(x, derivatives, slot)
        tables = self.tables(elements)
        return lambda x, slot: self.evaluate(x, tables, slot)

    def frozen(self) -> bool:
        """True if no weight requires gradients (the gradient-form evaluation applies)."""
        return not any(self._weight(nu).requires_grad for nu in range(1, self.correlation + 1))

    def derivative_tables(self, elements: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """D for ``elements``: per order q of the lower monomials (0: the constant, 1: the
        components, 2, ...), a contiguous [n_present, c, m * k, n_q] block, the derivative of the
        order q + 1 part of B with respect to each component.

        Cached while the weights keep their values (compared by value, a few thousand numbers:
        a precision policy that upcasts stored weights hands in new tensors at every call).
        """
        weights = [self._weight(nu) for nu in range(1, self.correlation + 1)]
        present = tuple(elements.tolist())
        cached = self._derivative_cache
        if cached is not None and _same_values(cached[0], (present, *weights)):
            return cached[1]
        key: CacheKey = (present, *(w.detach().clone() for w in weights))
        total = None
        for nu, weight in zip(range(1, self.correlation + 1), weights):
            coupling = getattr(self, f"derivative_coupling_{nu}").to(weight.dtype)
            part = torch.einsum("qnp,epc->ecqn", coupling, weight.index_select(0, elements))
            total = part if total is None else total + part
        assert total is not None
        table = total.detach().reshape(total.shape[0], total.shape[1], -1, total.shape[-1])
        sizes = [getattr(self, f"lower_monomials_{q}").shape[0] for q in range(self.lower_orders)]
        blocks = tuple(block.contiguous() for block in table.split(sizes, dim=3))
        self._derivative_cache = (key, blocks)
        return blocks

    def evaluate_frozen(
        self, x: torch.Tensor, tables: tuple[torch.Tensor, ...], slot: int
    ) -> torch.Tensor:
        """:meth:`evaluate` through the gradient (frozen weights): [c, m, B] from [c, k, B]."""
        lower = [getattr(self, f"lower_monomials_{q}") for q in range(2, self.lower_orders)]
        blocks = [table[slot] for table in tables]
        return _GradientForm.apply(x, lower, self.dim_out, *blocks)


def _products(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``prod_{k in n} x[:, k]`` for every row n of ``index`` [n, q]: [c, n, B] from [c, k, B]."""
    term = x.index_select(1, index[:, 0])
    for position in range(1, index.shape[1]):
        term = term * x.index_select(1, index[:, position])
    return term


def _lower_terms(x: torch.Tensor, lower: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Monomials of order 1 (x itself) and of orders 2, 3, ... (``lower[q - 2]`` [n_q, q])."""
    return [x, *(_products(x, index) for index in lower)]


def _gradient_rows(
    x: torch.Tensor, blocks: Sequence[torch.Tensor], lower: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(dB/dx, the same with order nu weighted by 1/nu): [c, m * k, B] each.

    ``blocks[q]`` [c, m * k, n_q] holds the columns of the order-q lower monomials (q = 0: the
    constant), which are the derivatives of the order nu = q + 1 part; ``lower`` indexes the
    monomials of order 2 and up.
    """
    c, _, b = x.shape
    jacobian = blocks[0].expand(c, blocks[0].shape[1], b)
    scaled = jacobian
    for q, (block, term) in enumerate(zip(blocks[1:], _lower_terms(x, lower)), start=1):
        part = torch.bmm(block, term)
        jacobian = jacobian + part
        scaled = torch.add(scaled, part, alpha=1.0 / (q + 1))
    return jacobian, scaled


class _GradientForm(torch.autograd.Function):
    """B from the gradient rows (Euler), the Jacobian kept for the backward pass."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lower: list, dim_out: int, *blocks: torch.Tensor):
        c, k, b = x.shape
        jacobian, scaled = _gradient_rows(x, blocks, lower)
        jacobian = jacobian.view(c, dim_out, k, b)
        ctx.save_for_backward(x, jacobian, *blocks)
        ctx.lower = lower
        return (scaled.view(c, dim_out, k, b) * x.unsqueeze(1)).sum(2)  # [c, m, B]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, jacobian, *blocks = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a Jacobian autograd can differentiate
            jacobian = _gradient_rows(x, blocks, ctx.lower)[0].view(jacobian.shape)
        return ((grad.unsqueeze(2) * jacobian).sum(1), None, None, *([None] * len(blocks)))


def _derivative_couplings(
    monomials: Sequence[tuple[torch.Tensor, torch.Tensor]], n: int
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The lower-order monomials the derivatives use, and each order's derivative coupling.

    Args:
        monomials: per order nu = 1, 2, ...: (index [n_nu, nu], coupling [m, n_nu, P_nu]).
        n: live components.

    Returns:
        (lower, couplings): ``lower[q]`` indexes the order-q monomials, q < len(monomials)
        (q = 0: the constant, [1, 0]; q = 1: every component, [n, 1]; q >= 2: those some
        derivative needs);
        ``couplings[nu - 1]`` [m * n, n_lower, P_nu] maps W_nu to the derivative tables
        (:meth:`FastContraction.derivative_tables`), with the lower monomials of every order side
        by side (order nu only fills the columns of order nu - 1).
    """
    top = len(monomials)  # the derivatives reach order top - 1
    lower: list[torch.Tensor] = [torch.zeros((1, 0), dtype=torch.long)]
    if top >= 2:
        lower.append(torch.arange(n).unsqueeze(1))
    for q in range(2, top):  # order q monomials: one index removed from order q + 1 ones
        index = monomials[q][0]  # order q + 1
        rests = torch.cat([torch.cat([index[:, :a], index[:, a + 1 :]], dim=1)
                           for a in range(q + 1)])  # fmt: skip
        lower.append(torch.unique(rests, dim=0))
    offsets = [0]
    for index in lower:
        offsets.append(offsets[-1] + index.shape[0])
    couplings = []
    for nu, (index, coupling) in enumerate(monomials, start=1):
        m, count, p = coupling.shape
        derivative = torch.zeros((m, n, offsets[-1], p), dtype=coupling.dtype)
        rest_table = lower[nu - 1]
        for a in range(nu if count else 0):  # d/dx at position a: index[:, a]; the rest stays
            rest = torch.cat([index[:, :a], index[:, a + 1 :]], dim=1)
            matches = (rest.unsqueeze(1) == rest_table.unsqueeze(0)).all(dim=2)  # [count, n_q]
            column = offsets[nu - 1] + matches.float().argmax(dim=1)
            for j in range(count):
                derivative[:, index[j, a], column[j]] += coupling[:, j]
        couplings.append(derivative.reshape(m * n, offsets[-1], p))
    return lower, couplings


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


def _same_values(a: CacheKey, b: CacheKey) -> bool:
    """Tensors compared by dtype, device, shape and values, everything else by value."""
    return len(a) == len(b) and all(
        x.dtype == y.dtype and x.device == y.device and torch.equal(x, y)
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)
        else x == y
        for x, y in zip(a, b)
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
            evaluate = contraction.polynomials(present_t)
            outs, start = [], 0
            for slot, element in enumerate(present):
                stop = start + counts[element]
                nodes = grouped[:, :, start:stop].contiguous()
                outs.append(evaluate(nodes, slot))
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
