"""Distributions for comparing MD runs and rankings: pair distributions, their distance, and
Spearman's rank correlation (numpy only; scipy is not a dependency)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.neighborlist import neighbor_list


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman rank correlation of two [n] arrays (ties get average ranks), numpy only.

    Returns None for fewer than two points or when either array is constant.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2:
        return None
    rx, ry = _average_ranks(x), _average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    return (np.bincount(inverse, weights=ranks) / counts)[inverse]


def pair_distribution(
    frames: Sequence[Atoms], *, r_max: float, bins: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """All-pairs distance distribution averaged over snapshots of one system.

    ``n(r)`` counts ordered pairs (i ≠ j, periodic images included) per atom and snapshot with a
    distance in the bin. Structures periodic in all three directions get the radial
    distribution function ``g(r) = n(r) / (4π r² dr ρ)`` (shell volume exact per bin, ρ = N/V),
    which tends to 1 at large r in a liquid. Molecules, clusters and slabs have no volume: they
    get the cell-free pair-distance density ``h(r) = n(r) / dr`` in neighbours per atom per Å,
    whose integral up to r is the mean number of neighbours within r.

    Args:
        frames: snapshots (same atoms, at least one).
        r_max: Å, largest distance.
        bins: histogram bins over [0, r_max].

    Returns:
        Bin centres [bins] in Å, the distribution [bins] (g: dimensionless; h: 1/Å) and its kind
        (``"g(r)"`` or ``"pair-distance density"``).
    """
    edges = np.linspace(0.0, r_max, bins + 1)
    counts = np.zeros(bins)
    for atoms in frames:
        counts += np.histogram(neighbor_list("d", atoms, r_max), bins=edges)[0]
    n_atoms = len(frames[0])
    per_atom = counts / (len(frames) * n_atoms)
    if bool(frames[0].pbc.all()):
        density = n_atoms / float(np.mean([atoms.get_volume() for atoms in frames]))
        shells = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)  # Å³
        return 0.5 * (edges[1:] + edges[:-1]), per_atom / (density * shells), "g(r)"
    return 0.5 * (edges[1:] + edges[:-1]), per_atom / np.diff(edges), "pair-distance density"


def rdf_distance(reference: np.ndarray, other: np.ndarray) -> float | None:
    """∫|other - reference| dr / ∫ reference dr on a shared uniform grid (None: empty reference)."""
    total = float(np.sum(reference))
    return float(np.sum(np.abs(other - reference)) / total) if total > 0 else None
