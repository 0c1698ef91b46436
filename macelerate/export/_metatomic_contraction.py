"""mace-torch's symmetric contraction with frozen weights, in a form TorchScript compiles, for
metatomic exports: the runtime's gradient form (:mod:`macelerate.runtime.symmetric_contraction`).

Per element, the Jacobian dB/dx comes from derivative tables computed once from the frozen
weights, and B from it by Euler's theorem. TorchScript has no custom autograd functions, so the
output is written as ``B + J·(x - stop_gradient(x))``: B's value, and J as its gradient (one
product in the backward pass, as in the runtime). First derivatives (forces, stress) are exact;
the export has no second derivatives.

No ``from __future__ import annotations``: TorchScript reads these annotations.
"""

# ruff: noqa: UP006, UP035

from typing import Any, List, cast

import torch

from macelerate.export._metatomic_buffer import FrozenTensor
from macelerate.runtime.symmetric_contraction import FastContraction, FastSymmetricContraction


class _FrozenPolynomial(torch.nn.Module):
    """One output irrep's frozen polynomial in the runtime's gradient form
    (:meth:`~macelerate.runtime.symmetric_contraction.FastContraction.evaluate_frozen`): per
    element, the Jacobian dB/dx from the derivative tables, and B from it by Euler's theorem.

    TorchScript has no custom autograd functions, so the Jacobian is computed without a graph
    and the output is ``B + sum_k J_k (x_k - stop_gradient(x_k))``: B's value, and J as its
    gradient (one product in the backward pass, as in the runtime). First derivatives (forces,
    stress) are exact; the export has no second derivatives (metatomic engines ask for none).
    """

    def __init__(self, contraction: FastContraction, n_elements: int):
        super().__init__()
        with torch.no_grad():
            tables = contraction.derivative_tables(torch.arange(n_elements))
        # per order q of the lower monomials: [n_elements, c, m * k, n_q]
        self.tables = torch.nn.ModuleList([FrozenTensor(table) for table in tables])
        self.lower = torch.nn.ModuleList(
            [
                FrozenTensor(getattr(contraction, f"lower_monomials_{q}"))
                for q in range(2, contraction.lower_orders)
            ]
        )
        self.dim_out = int(contraction.dim_out)

    def forward(self, x: torch.Tensor, element: int) -> torch.Tensor:
        """``x`` [c, k, b] (the nodes of ``element``, nodes last) -> [c, m, b]."""
        c, k, b = x.shape[0], x.shape[1], x.shape[2]
        values = x.detach()
        terms: List[torch.Tensor] = [values]
        for lower in self.lower:
            index = lower()  # [n_q, q]
            term = values.index_select(1, index[:, 0])
            for position in range(1, index.shape[1]):
                term = term * values.index_select(1, index[:, position])
            terms.append(term)
        jacobian = values.new_zeros((0,))
        scaled = values.new_zeros((0,))
        for q, table in enumerate(self.tables):
            block = table()[element].to(values.dtype)  # [c, m * k, n_q]
            if q == 0:
                jacobian = block.expand(c, block.shape[1], b)
                scaled = jacobian
            else:
                part = torch.bmm(block, terms[q - 1])
                jacobian = jacobian + part
                scaled = torch.add(scaled, part, alpha=1.0 / (q + 1))
        jacobian = jacobian.view(c, self.dim_out, k, b)
        value = (scaled.view(c, self.dim_out, k, b) * values.unsqueeze(1)).sum(2)
        return value + (jacobian * (x - values).unsqueeze(1)).sum(2)


class ScriptableSymmetricContraction(torch.nn.Module):
    """mace-torch's ``SymmetricContraction`` with frozen weights in the runtime's gradient form:
    ``(x [b, c, i], node_attrs [b, n_elements] one-hot) -> [b, sum_L c * (2L + 1)]``, nodes
    grouped by element, per-element tables computed once (equal to mace-torch's result to
    floating-point rounding, as macelerate's runtime; see :class:`_FrozenPolynomial`)."""

    live: torch.Tensor

    def __init__(self, source: Any, live_components: Any = None):
        super().__init__()
        fast = FastSymmetricContraction(source, live_components=live_components)
        self.n_elements = int(source.contractions[0].weights_max.shape[0])
        self.register_buffer("live", fast.live.clone())
        first: Any = fast.contractions[0]
        self.n_components = int(first.n_components)
        sources = cast(List[FastContraction], list(fast.contractions))
        self.contractions = torch.nn.ModuleList(
            [_FrozenPolynomial(contraction, self.n_elements) for contraction in sources]
        )

    def forward(self, x: torch.Tensor, node_attrs: torch.Tensor) -> torch.Tensor:
        n_nodes = x.shape[0]
        if self.live.shape[0] != self.n_components:
            x = x.index_select(2, self.live)
        elements = node_attrs.argmax(dim=1)
        order = torch.argsort(elements, stable=True)
        counts: List[int] = torch.bincount(elements, minlength=self.n_elements).tolist()
        grouped = x.index_select(0, order).permute(1, 2, 0)  # [c, i, n], nodes by element
        # split, not narrow: the backward pass is one concatenation
        chunks = [chunk.contiguous() for chunk in grouped.split(counts, dim=2)]
        pieces: List[torch.Tensor] = []
        for contraction in self.contractions:
            outs: List[torch.Tensor] = []
            for element, chunk in enumerate(chunks):
                if counts[element] > 0:
                    outs.append(contraction(chunk, element))
            out = torch.cat(outs, dim=2)  # [c, m, n]
            pieces.append(out.permute(2, 0, 1).reshape(n_nodes, -1))
        result = torch.cat(pieces, dim=1)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(n_nodes, device=x.device)
        return result.index_select(0, inverse)
