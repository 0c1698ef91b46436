"""The smooth cap's threshold search in torch operations, for models that run without NumPy.

:func:`macelerate.graph.smooth_cap.cap_thresholds` searches on the host in NumPy, which
dispatches the short arrays of each step faster than torch. A model compiled to TorchScript (the
metatomic export, run by LAMMPS, i-PI or torch-sim) has no NumPy, so
:class:`~macelerate.graph.smooth_cap.SmoothCapRadialEmbedding` calls :func:`soft_count_thresholds`
there: the same safeguarded Schröder iteration from the same bracket, in torch, on the lengths'
device. The two agree to the root tolerance (tested); the weights' gradients do not depend on
which one ran, since the threshold is re-attached by its implicit derivative either way.

Differences from the NumPy search, neither of which changes a root: every edge of a capped
receiver takes part in each step (edges far below or above the bracket add exactly 1 or 0 to
the soft count and nothing to its derivatives), and no starting guess is used.
"""

from __future__ import annotations

import torch

MAX_ITERATIONS = 64
"""Upper bound on root-finding steps (Schröder inside the bracket, else bisection)."""

TOLERANCE = 1e-13
"""Root accepted when |F_i(t) - k| <= TOLERANCE * k: the weight sum is then k to that accuracy."""


def soft_count_thresholds(
    lengths: torch.Tensor,
    receivers: torch.Tensor,
    n_nodes: int,
    max_neighbors: int,
    width: float,
    ceiling: float,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
) -> torch.Tensor:
    """Per-receiver thresholds ``t_i = min(root of Σ_j s((t - d_ij)/δ) = k, ceiling)``.

    TorchScript-ready; runs without gradients on the device of ``lengths``.

    Args:
        lengths: [n_edges] edge lengths in Å.
        receivers: [n_edges] receiver index of each edge.
        n_nodes: number of atoms.
        max_neighbors: k >= 1.
        width: δ > 0 in Å.
        ceiling: the largest threshold in Å (the model cutoff + δ).
        max_iterations: bound on the steps.
        tolerance: a root is accepted when ``|F_i(t) - k| <= tolerance * k``.

    Returns:
        t: [n_nodes] float64 thresholds in Å.
    """
    with torch.no_grad():
        d = lengths.detach().to(torch.float64)
        r = receivers.to(torch.long)
        k = float(max_neighbors)
        counts = torch.bincount(r, minlength=n_nodes)  # [n_nodes]
        # edges at ceiling + δ or beyond never count (padding a graph may add such edges)
        near = torch.bincount(r[d < ceiling + width], minlength=n_nodes)
        capped = near > max_neighbors  # with at most k edges, F <= k: t is the ceiling
        thresholds = torch.full([n_nodes], ceiling, dtype=torch.float64, device=d.device)
        if not bool(capped.any()):
            return thresholds
        # the hard k-th smallest length of each receiver: sort by length, then stably by receiver
        by_length = torch.sort(d)[1]
        order = by_length[torch.sort(r[by_length], stable=True)[1]]
        start = torch.cumsum(counts, 0) - counts
        kth_edge = torch.clamp(start + (max_neighbors - 1), max=d.shape[0] - 1)
        kth = d[order[kth_edge]]  # [n_nodes], meaningful where capped
        low = torch.where(capped, kth - width, thresholds)  # F(low) <= k - 1 < k <= F(high)
        high = torch.where(capped, kth + width, thresholds)
        t = 0.5 * (low + high)
        done = ~capped
        previous = torch.full_like(t, float("inf"))  # |F - k| of the step before
        for _ in range(max_iterations):
            u = (torch.clamp((t[r] - d) / width, -1.0, 1.0) + 1.0) * 0.5
            v = u * (1.0 - u)
            zero = torch.zeros_like(t)
            count = zero.index_add(0, r, u * u * u * (10.0 + u * (-15.0 + 6.0 * u)))
            slope = zero.index_add(0, r, 15.0 * v * v) / width
            curvature = zero.index_add(0, r, 15.0 * v * (1.0 - 2.0 * u)) / (width * width)
            excess = count - k  # F(t) - k
            size = torch.abs(excess)
            done = done | (size <= tolerance * k) | (high - low <= 1e-15 * torch.abs(high))
            if bool(done.all()):
                break
            above = excess >= 0
            high, low = torch.where(above, t, high), torch.where(above, low, t)
            denominator = slope * slope - excess * curvature
            safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
            step = t - excess * slope / safe
            step_ok = (size < 0.25 * previous) & (denominator > 0) & (step > low) & (step < high)
            t = torch.where(done, t, torch.where(step_ok, step, 0.5 * (low + high)))
            previous = size
        return torch.where(capped, torch.clamp(t, max=ceiling), thresholds)
