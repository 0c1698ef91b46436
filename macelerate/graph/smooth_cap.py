"""Smooth neighbour cap: at most k full-weight neighbours per atom, with energies that stay C1.

The hard cap (:func:`macelerate.graph.caps.cap_neighbors`) keeps the k nearest senders of each
receiver, so the energy jumps when the k-th and (k+1)-th neighbours swap. Here every edge j -> i
gets a weight ``w_ij`` in [0, 1] that multiplies its message, and the weight moves continuously.

Design (d_ij: edge length, δ: ``width``, k: ``max_neighbors``, r_c: the model cutoff, n_i: the
number of edges into i in the graph)::

    s(x)   = quintic smoothstep: 0 for x <= -1, 1 for x >= 1, C2, s(x) + s(-x) = 1
    F_i(t) = Σ_j s((t - d_ij) / δ)          soft count of i's neighbours closer than t
    t_i    = min(root of F_i(t) = k, r_c + δ)  if n_i > k    (a soft k-th neighbour distance)
           = r_c + δ                            if n_i <= k
    w_ij   = s((t_i - d_ij) / δ)

The root lies in [d_(k) - δ, d_(k) + δ] (d_(k): the hard k-th distance) and is found there by
safeguarded Schröder steps (about five) without gradients.

Properties (checked in tests/graph/test_smooth_cap.py):

* Weight budget: ``Σ_j w_ij = F_i(t_i) = k`` when the cap acts, so at most k edges have full
  weight and an atom never sees more than k neighbours' worth of messages. An equidistant shell
  larger than k is split evenly (n edges at equal distance get k/n each).
* Sparsity: edges with ``d_ij >= t_i + δ`` have weight exactly 0 and do not change ``t_i``, so
  they are dropped from the graph (:func:`smooth_cap_keep`). An atom keeps the edges with
  ``d_ij < t_i + δ``: k plus about ``4π t_i² ρ δ`` partial-weight edges at number density ρ (a
  graphene-oxide cell, k = 16, δ = 0.2 Å: 18.1 edges per atom against 15.8 with the hard cap).
  There is no fixed bound beyond the neighbour count: a degenerate shell puts all its members in
  the window ``(t_i - δ, t_i + δ)``. A smaller δ keeps fewer edges but makes the cap's forces
  steeper (they scale as 1/δ).
* Smoothness: w is a C1 function of positions. Where F_i crosses k at one point, t_i is smooth
  with ``∂t_i/∂d_ij = s'_j / Σ_l s'_l`` (a convex combination, so bounded). Where F_i = k on an
  interval (a gap wider than 2δ between the k-th and (k+1)-th neighbours), every weight is 0 or
  1 for any threshold in it, and all derivatives of w vanish on both sides of the change. δ is a
  fixed width, so degenerate distances never make the switch sharper.
* Exact forces: t_i is re-attached to the autograd graph with its implicit-function derivative,
  so forces and stress are exact gradients of the capped energy (second derivatives of w with
  respect to positions omit the threshold's curvature: Hessians are approximate).
* Cutoff: neighbours are counted up to ``r_c + 2δ`` (graphs are built with that cutoff, then
  pruned), so an atom entering the counting sphere never moves a threshold (``t_i <= r_c + δ``),
  and an edge entering r_c starts with a zero message (the model's own radial envelope; edges
  beyond r_c only count). With k >= n_i every weight is exactly 1 and the model is unchanged.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from macelerate.graph.smooth_cap_torch import MAX_ITERATIONS, TOLERANCE, soft_count_thresholds

KEEP_MARGIN = 1e-6
"""Relative safety margin (of δ) when pruning zero-weight edges: only edges with w == 0 go."""


GUESS_MARGIN = 1e-4
"""Half-width, in units of δ, of the bracket around a threshold guess (a float32 model's edge
lengths differ from the float64 ones of the graph build by ~1e-7 Å, so its roots by as little)."""

_THRESHOLD_GUESS: contextvars.ContextVar[torch.Tensor | None] = contextvars.ContextVar(
    "macelerate_cap_threshold_guess", default=None
)


@contextlib.contextmanager
def threshold_guess(guess: torch.Tensor | None) -> Iterator[None]:
    """Start the threshold searches of :class:`SmoothCapRadialEmbedding` from ``guess`` here.

    ``guess`` is a graph's ``cap_threshold`` ([n_nodes] Å, written by
    :func:`select_smooth_cap_edges`). It only speeds the search up: it is used where it brackets
    a root of the current edge lengths (see :func:`cap_thresholds`) and ignored otherwise, so a
    stale guess costs time, never accuracy. Restores the previous guess on exit (thread- and
    task-local, like any ``contextvars`` value).
    """
    token = _THRESHOLD_GUESS.set(guess)
    try:
        yield
    finally:
        _THRESHOLD_GUESS.reset(token)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Quintic step on [-1, 1]: 0 below, 1 above, C2, with s(x) + s(-x) = 1."""
    u = (x.clamp(-1.0, 1.0) + 1.0) * 0.5
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


def smoothstep_derivative(x: torch.Tensor) -> torch.Tensor:
    """ds/dx of :func:`smoothstep` (zero outside (-1, 1))."""
    u = (x.clamp(-1.0, 1.0) + 1.0) * 0.5
    return 15.0 * (u * (1.0 - u)) ** 2


def _kth_lengths(
    lengths: np.ndarray, receivers: np.ndarray, nodes: np.ndarray, counts: np.ndarray, k: int
) -> np.ndarray:
    """Hard k-th smallest incoming edge length of each receiver in ``nodes`` (count > k)."""
    span = float(lengths.max()) + 1.0
    order = np.argsort(receivers * span + lengths)  # receiver, then length
    start = np.cumsum(counts) - counts
    return lengths[order[start[nodes] + (k - 1)]]


def _switch_sums(
    x: np.ndarray, slots: np.ndarray, n_slots: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slot, the sums of s(x), ds/dx and d²s/dx² of :func:`smoothstep` (x: [n_window])."""
    u = (np.clip(x, -1.0, 1.0) + 1.0) * 0.5
    v = u * (1.0 - u)
    value = u * u * u * (10.0 + u * (-15.0 + 6.0 * u))
    return (
        np.bincount(slots, value, n_slots),
        np.bincount(slots, 15.0 * v * v, n_slots),
        np.bincount(slots, 15.0 * v * (1.0 - 2.0 * u), n_slots),
    )


def _solve_soft_count(
    base: np.ndarray,
    lengths: np.ndarray,
    slots: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    *,
    k: int,
    width: float,
) -> np.ndarray:
    """Safeguarded root-finding for ``base + Σ_j s((t - d_j)/δ) = k`` per slot, in [low, high].

    Steps are Schröder's (Newton on f/f'), t ← t - f f' / (f'² - f f''), which converge
    quadratically at roots of any multiplicity: where the k-th neighbour's switch ends just as
    the next one's starts, f' vanishes at the root (a triple root) and plain Newton crawls.
    A step that leaves the bracket or does not shrink |f| fourfold is replaced by bisection.
    Any root will do: where F = k on an interval, every weight is 0 or 1 anywhere on it.
    Runs in float64 NumPy: a few dozen operations on short arrays per step, which NumPy
    dispatches several times faster than torch.
    """
    n_slots = base.shape[0]
    t = 0.5 * (low + high)
    previous = np.full_like(t, np.inf)  # |F - k| of the step before
    for _ in range(MAX_ITERATIONS):
        count, slope, curvature = _switch_sums((t[slots] - lengths) / width, slots, n_slots)
        excess = base + count - k  # F(t) - k
        slope, curvature = slope / width, curvature / (width * width)
        size = np.abs(excess)
        done = (size <= TOLERANCE * k) | (high - low <= 1e-15 * np.abs(high))
        if done.all():
            break
        above = excess >= 0
        high, low = np.where(above, t, high), np.where(above, low, t)
        denominator = slope * slope - excess * curvature
        step = t - excess * slope / np.where(denominator > 0, denominator, 1.0)
        step_ok = (size < 0.25 * previous) & (denominator > 0) & (step > low) & (step < high)
        t = np.where(done, t, np.where(step_ok, step, 0.5 * (low + high)))
        previous = size
    return t


def _refine_guess(
    guess: np.ndarray,
    lengths: np.ndarray,
    edge_slot: np.ndarray,
    *,
    k: int,
    width: float,
    ceiling: float,
) -> np.ndarray | None:
    """Thresholds of the capped nodes searched near ``guess`` [n_capped], or None.

    ``edge_slot``: [n_edges] the capped node index of each edge's receiver (-1: not capped).
    None unless, for every node, ``F(guess - m) <= k <= F(guess + m)`` (a root in between), or,
    for a guess at the ceiling, ``F(ceiling) <= k`` (the root lies at or beyond it).
    """
    capped = edge_slot >= 0
    window, slots = lengths[capped], edge_slot[capped]
    at_ceiling = guess >= ceiling
    margin = GUESS_MARGIN * width
    low = np.where(at_ceiling, ceiling, guess - margin)
    high = np.where(at_ceiling, low, guess + margin)
    n_slots = guess.shape[0]
    at_low = _switch_sums((low[slots] - window) / width, slots, n_slots)[0]
    at_high = _switch_sums((high[slots] - window) / width, slots, n_slots)[0]
    slack = TOLERANCE * k
    if not ((at_low <= k + slack) & (at_ceiling | (at_high >= k - slack))).all():
        return None
    return _solve_soft_count(np.zeros_like(guess), window, slots, low, high, k=k, width=width)


def _thresholds(
    lengths: np.ndarray,
    receivers: np.ndarray,
    *,
    n_nodes: int,
    k: int,
    width: float,
    ceiling: float,
    guess: np.ndarray | None,
) -> np.ndarray:
    """:func:`cap_thresholds` on float64/int64 NumPy arrays."""
    if k < 1 or not width > 0:
        raise ValueError(f"need max_neighbors >= 1 and width > 0, got {k}, {width}")
    thresholds = np.full(n_nodes, float(ceiling))
    counts = np.bincount(receivers, minlength=n_nodes)
    # With at most k edges, F(t) <= k everywhere: the threshold is the ceiling and all w = 1.
    nodes = np.flatnonzero(counts > k)  # [n_capped]
    if nodes.size == 0:
        return thresholds
    slot = np.full(n_nodes, -1, dtype=np.int64)
    slot[nodes] = np.arange(nodes.size)
    edge_slot = slot[receivers]  # [n_edges], -1 for receivers with at most k edges
    if guess is not None and guess.shape == (n_nodes,):
        refined = _refine_guess(guess[nodes], lengths, edge_slot, k=k, width=width,
                                ceiling=ceiling)  # fmt: skip
        if refined is not None:
            thresholds[nodes] = refined
            return thresholds
    kth = _kth_lengths(lengths, receivers, nodes, counts, k)  # [n_capped]
    kth_edge = kth[np.maximum(edge_slot, 0)]
    capped = edge_slot >= 0
    # Over the bracket [kth - δ, kth + δ], edges below kth - 2δ count 1, above kth + 2δ count 0.
    below = capped & (lengths <= kth_edge - 2.0 * width)
    window = capped & ~below & (lengths < kth_edge + 2.0 * width)
    base = np.bincount(edge_slot[below], minlength=nodes.size).astype(np.float64)
    low, high = kth - width, kth + width  # F(low) <= k - 1 < k <= F(high)
    root = _solve_soft_count(base, lengths[window], edge_slot[window], low, high, k=k, width=width)
    thresholds[nodes] = np.minimum(root, float(ceiling))
    return thresholds


@torch.no_grad()
def cap_thresholds(
    lengths: torch.Tensor,
    receivers: torch.Tensor,
    *,
    n_nodes: int,
    max_neighbors: int,
    width: float,
    ceiling: float,
    guess: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-receiver thresholds ``t_i = min(root of F_i(t) = k, ceiling)``, without gradients.

    The search runs on the host in float64 (lengths are copied from the model's device once):
    it is a short loop of small operations that no device would run faster.

    Args:
        lengths: [n_edges] edge lengths in Å.
        receivers: [n_edges] receiver index of each edge.
        n_nodes: number of atoms.
        max_neighbors: k >= 1.
        width: δ > 0 in Å, the half-width of the switch.
        ceiling: largest threshold in Å (the model cutoff + δ).
        guess: [n_nodes] thresholds in Å of (nearly) the same edge lengths, e.g. from the graph
            build. Where ``[guess - m, guess + m]`` (m = :data:`GUESS_MARGIN` · δ) brackets a
            root for every capped receiver, the search starts there (a few steps, no sort);
            otherwise the guess is ignored. The result is a root either way.

    Returns:
        t: [n_nodes] float64 thresholds in Å, on the device of ``lengths``.
    """
    thresholds = _thresholds(
        lengths.detach().to("cpu", torch.float64).numpy(),
        receivers.to("cpu", torch.int64).numpy(),
        n_nodes=n_nodes, k=max_neighbors, width=width, ceiling=ceiling,
        guess=None if guess is None else guess.detach().to("cpu", torch.float64).numpy(),
    )  # fmt: skip
    return torch.from_numpy(thresholds).to(lengths.device)


def smooth_cap_weights(
    lengths: torch.Tensor,
    receivers: torch.Tensor,
    *,
    n_nodes: int,
    max_neighbors: int,
    width: float,
    ceiling: float,
    guess: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable smooth-cap weights ``w_ij`` (see the module docstring).

    Args:
        lengths: [n_edges] edge lengths in Å (may require grad).
        receivers: [n_edges] receiver index of each edge.
        n_nodes: number of atoms.
        max_neighbors: k, the number of full-weight neighbours an atom may have.
        width: δ in Å.
        ceiling: the largest threshold in Å, the model cutoff + δ.
        guess: [n_nodes] starting thresholds in Å (see :func:`cap_thresholds`), or None.

    Returns:
        w: [n_edges] weights in [0, 1], dtype of ``lengths``; gradients include dt_i/dd_ij.
    """
    threshold = cap_thresholds(
        lengths, receivers, n_nodes=n_nodes, max_neighbors=max_neighbors, width=width,
        ceiling=ceiling, guess=guess,
    )  # fmt: skip
    return weights_at_thresholds(lengths, receivers, threshold, n_nodes, width, ceiling)


def weights_at_thresholds(
    lengths: torch.Tensor,
    receivers: torch.Tensor,
    threshold: torch.Tensor,
    n_nodes: int,
    width: float,
    ceiling: float,
) -> torch.Tensor:
    """``w_ij = s((t_i - d_ij) / δ)`` with ``t_i`` re-attached by its implicit derivative.

    TorchScript-ready (the metatomic export compiles it).

    Args:
        lengths: [n_edges] edge lengths in Å (may require grad).
        receivers: [n_edges] receiver index of each edge.
        threshold: [n_nodes] float64 roots t*_i of the edge lengths' values, without gradients.
        n_nodes: number of atoms.
        width: δ in Å.
        ceiling: the largest threshold in Å (thresholds there do not move with the lengths).

    Returns:
        w: [n_edges] weights in [0, 1], dtype of ``lengths``.
    """
    detached = lengths.detach()
    slope = smoothstep_derivative((threshold[receivers] - detached.double()) / width)
    slope = torch.where(threshold[receivers] < ceiling, slope, torch.zeros_like(slope))
    total = torch.zeros_like(threshold).index_add_(0, receivers, slope)
    share = torch.where(total[receivers] > 0, slope / total[receivers].clamp(min=1e-300), 0.0)
    # t_i = t*_i + Σ_j share_ij (d_ij - d*_ij): value t*_i, gradient ∂t_i/∂d_ij = s'_j / Σ_l s'_l.
    implicit = torch.zeros(n_nodes, dtype=lengths.dtype, device=lengths.device).index_add(
        0, receivers, share.to(lengths.dtype) * (lengths - detached)
    )
    t = threshold.to(lengths.dtype) + implicit  # [n_nodes]
    return smoothstep((t[receivers] - lengths) / width)


def smooth_cap_keep(
    edge_index: np.ndarray,
    lengths: np.ndarray,
    *,
    n_nodes: int,
    max_neighbors: int,
    width: float,
    cutoff: float,
    keep_within: float = 0.0,
) -> np.ndarray:
    """Indices of the edges that can have a non-zero smooth-cap weight (for sparse graphs).

    Dropping the others changes neither the thresholds nor any weight, so a model evaluated on
    the pruned graph gives the same energies and forces as on the full one.

    Args:
        edge_index: [2, n_edges] sender, receiver; built with cutoff ``cutoff + 2 * width``.
        lengths: [n_edges] edge lengths in Å.
        n_nodes: number of atoms.
        max_neighbors: k.
        width: δ in Å.
        cutoff: the model cutoff r_c in Å.
        keep_within: Å; shorter edges are always kept (e.g. the range of a ZBL pair term, which
            sees every edge of the graph).

    Returns:
        keep: [n_kept] int64 edge indices in ascending order.
    """
    threshold = _thresholds(
        np.asarray(lengths, dtype=np.float64), np.asarray(edge_index[1], dtype=np.int64),
        n_nodes=n_nodes, k=max_neighbors, width=width, ceiling=cutoff + width, guess=None,
    )  # fmt: skip
    return _kept(edge_index, lengths, threshold, width=width, keep_within=keep_within)


def _kept(
    edge_index: np.ndarray,
    lengths: np.ndarray,
    threshold: np.ndarray,
    *,
    width: float,
    keep_within: float,
) -> np.ndarray:
    """Indices of the edges shorter than their receiver's threshold + δ (or ``keep_within``)."""
    limit = threshold[edge_index[1]] + width * (1.0 + KEEP_MARGIN)
    keep = (lengths < limit) | (lengths < keep_within)
    return np.flatnonzero(keep).astype(np.int64)


def edge_lengths(graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """[n_edges] lengths in Å of a graph dict (``r_receiver - r_sender + shift``)."""
    senders, receivers = graph["edge_index"]
    vectors = graph["positions"][receivers] - graph["positions"][senders] + graph["shifts"]
    return torch.linalg.vector_norm(vectors, dim=1)


def select_smooth_cap_edges(
    graph: dict[str, torch.Tensor],
    *,
    max_neighbors: int,
    width: float,
    cutoff: float,
    keep_within: float = 0.0,
) -> dict[str, torch.Tensor]:
    """A copy of ``graph`` without the edges whose smooth-cap weight is exactly 0.

    ``graph`` should be built with cutoff ``cutoff + 2 * width`` and no hard cap (see
    :func:`smooth_cap_keep` for the arguments). The input dictionary is not modified. The copy
    also carries ``cap_threshold``: [n_atoms] float64 thresholds t_i in Å, which a student's
    forward passes to its threshold searches as a starting point (:func:`threshold_guess`).
    """
    with torch.no_grad():
        lengths = edge_lengths(graph).double().cpu().numpy()
    edge_index = graph["edge_index"].cpu().numpy()
    threshold = _thresholds(
        lengths, edge_index[1], n_nodes=int(graph["positions"].shape[0]), k=max_neighbors,
        width=width, ceiling=cutoff + width, guess=None,
    )  # fmt: skip
    keep = _kept(edge_index, lengths, threshold, width=width, keep_within=keep_within)
    index = torch.from_numpy(keep).to(graph["edge_index"].device)
    pruned = dict(graph)
    pruned["edge_index"] = graph["edge_index"][:, index]
    for key in ("shifts", "unit_shifts"):
        pruned[key] = graph[key][index]
    pruned["cap_threshold"] = torch.from_numpy(threshold).to(graph["positions"].device)
    return pruned


class SmoothCapRadialEmbedding(torch.nn.Module):
    """Drop-in ``radial_embedding`` of a mace-torch model that applies the smooth cap.

    mace-torch's interaction blocks multiply the radial MLP output (the tensor-product weights)
    by the ``cutoff`` the radial embedding returns. This module returns ``w`` there (times the
    inner cutoff if the inner embedding returns one), so each message is exactly ``w_ij`` times
    the uncapped message, and autograd includes dw/dr in forces and stress.

    Args:
        radial_embedding: the model's ``RadialEmbeddingBlock`` (kept as ``self.inner``).
        max_neighbors: k.
        width: δ in Å.
        cutoff: the model cutoff r_c in Å (default: the inner block's ``cutoff_fn.r_max``).
    """

    DELEGATED = ("bessel_fn", "cutoff_fn", "distance_transform", "apply_cutoff", "out_dim")
    """Attributes read through to the inner block, so mace-torch tools can describe the model."""

    def __init__(
        self,
        radial_embedding: torch.nn.Module,
        *,
        max_neighbors: int,
        width: float,
        cutoff: float | None = None,
    ) -> None:
        super().__init__()
        if max_neighbors < 1 or not width > 0:
            raise ValueError(f"need max_neighbors >= 1 and width > 0, got {max_neighbors}, {width}")
        self.inner = radial_embedding
        self.max_neighbors = int(max_neighbors)
        self.width = float(width)
        inner: Any = radial_embedding  # mace-torch's RadialEmbeddingBlock
        self.cutoff = float(inner.cutoff_fn.r_max if cutoff is None else cutoff)

    def __getattr__(self, name: str):
        if name in SmoothCapRadialEmbedding.DELEGATED:
            return getattr(self._modules["inner"], name)
        return super().__getattr__(name)

    def forward(
        self,
        edge_lengths: torch.Tensor,
        node_attrs: torch.Tensor,
        edge_index: torch.Tensor,
        atomic_numbers: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(edge_feats [n_edges, n_basis], cutoff [n_edges, 1])`` with the cap in ``cutoff``.

        In Python the thresholds come from the host search (:func:`cap_thresholds`, with the
        :func:`threshold_guess` in effect); compiled to TorchScript, from the torch search
        (:func:`~macelerate.graph.smooth_cap_torch.soft_count_thresholds`).
        """
        edge_feats, cutoff = self.inner(edge_lengths, node_attrs, edge_index, atomic_numbers)
        lengths, receivers = edge_lengths.squeeze(-1), edge_index[1]
        n_nodes, ceiling = node_attrs.shape[0], self.cutoff + self.width
        if torch.jit.is_scripting():
            threshold = soft_count_thresholds(
                lengths, receivers, n_nodes, self.max_neighbors, self.width, ceiling
            )
        else:
            threshold = self._host_thresholds(lengths, receivers, n_nodes)
        weights = weights_at_thresholds(lengths, receivers, threshold, n_nodes, self.width, ceiling)
        weights = weights.unsqueeze(-1)  # [n_edges, 1]
        return edge_feats, weights if cutoff is None else cutoff * weights

    @torch.jit.unused
    def _host_thresholds(
        self, lengths: torch.Tensor, receivers: torch.Tensor, n_nodes: int
    ) -> torch.Tensor:
        """[n_nodes] float64 thresholds from :func:`cap_thresholds` (Python only)."""
        return cap_thresholds(
            lengths, receivers, n_nodes=n_nodes, max_neighbors=self.max_neighbors,
            width=self.width, ceiling=self.cutoff + self.width, guess=_THRESHOLD_GUESS.get(),
        )  # fmt: skip

    def extra_repr(self) -> str:
        return f"max_neighbors={self.max_neighbors}, width={self.width}, cutoff={self.cutoff}"
