"""Largest jumps of energy and forces along a short path that crosses a cutoff sphere.

One atom moves in ``n_points`` equal steps along a straight line. By default the line runs
through the point where the atom's distance to its neighbour nearest to the cutoff equals
``r_max``, so an edge enters or leaves the graph on the way. A smooth model changes by about the
same amount from step to step; a discontinuity (for example a hard neighbour cap from
``build_graph(..., max_neighbors=k)`` when the k-th and (k+1)-th neighbours swap) gives one
step-to-step change far above the median, so the ``*_ratio`` fields become large.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase import Atoms

from macelerate.checks._batching import predict_each, ratio
from macelerate.checks.thresholds import Tolerances, Verdict, judge
from macelerate.errors import StructureError
from macelerate.graph.neighbors import radius_graph
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class SmoothnessResult:
    """Step-to-step changes along a path of one moving atom.

    Attributes:
        atom: index of the moving atom.
        n_points: structures along the path.
        step: distance between consecutive points, Å.
        max_energy_slope: max |ΔE| / step between consecutive points, eV/Å.
        max_force_jump: max over consecutive points of the largest per-atom |ΔF|, eV/Å.
        energy_ratio: max |ΔE| / median |ΔE| (about 1-10 when smooth). The median is raised to
            2 x the median |Δ²E| where that is larger: rounding noise (large float32 energies,
            half precision) makes second differences as large as first ones, while a smooth path
            keeps them far smaller, and one jump moves neither median.
        force_ratio: max |ΔF| / median |ΔF| (about 1-10 when smooth), with the same floor.
        max_neighbors: the hard neighbour cap used to build graphs (None: no cap).
    """

    atom: int
    n_points: int
    step: float
    max_energy_slope: float
    max_force_jump: float
    energy_ratio: float
    force_ratio: float
    max_neighbors: int | None

    def verdicts(self, tolerances: Tolerances) -> list[Verdict]:
        """Jump ratios of energy and forces against ``tolerances.smoothness_ratio``."""
        hint = (
            "the energy or forces jump along a smooth path: a discontinuity such as a hard "
            "neighbour cap (train or run with the smooth cap) or a cutoff without an envelope"
        )
        limit = tolerances.smoothness_ratio
        return [
            judge("smoothness", "energy jump / median", self.energy_ratio, limit, hint=hint),
            judge("smoothness", "force jump / median", self.force_ratio, limit, hint=hint),
        ]


def cutoff_crossing(atoms: Atoms, atom: int, *, cutoff: float) -> tuple[np.ndarray, float]:
    """Direction and offset that carry ``atom`` onto the cutoff sphere of one neighbour.

    Picks the pair (through periodic images, other atoms only) whose distance is closest to
    ``cutoff`` and returns the unit vector from that neighbour to ``atom`` [3] and the signed
    distance (Å) to move along it so that the pair distance equals ``cutoff``.
    """
    edge_index, unit_shifts, lengths = radius_graph(
        atoms.positions, atoms.cell.array, atoms.pbc, cutoff=cutoff + 2.0
    )
    senders, receivers = edge_index
    mask = (receivers == atom) & (senders != atom)
    if not mask.any():
        raise StructureError(
            f"atom {atom} has no neighbour within {cutoff + 2.0:.2f} Å, so no path crosses a "
            "cutoff sphere; pass another atom or an explicit direction"
        )
    best = np.flatnonzero(mask)[np.argmin(np.abs(lengths[mask] - cutoff))]
    # edge vector r[receiver] - r[sender] + S @ cell: from the neighbour's image to the atom
    vector = (
        atoms.positions[atom]
        - atoms.positions[senders[best]]
        + unit_shifts[best] @ atoms.cell.array
    )
    return vector / lengths[best], float(cutoff - lengths[best])


def path_structures(
    atoms: Atoms, atom: int, *, direction: np.ndarray, start: float, span: float, n_points: int
) -> list[Atoms]:
    """Copies of ``atoms`` with ``atom`` moved by ``(start + t) * direction``, t in [0, span]."""
    unit = np.asarray(direction, dtype=np.float64) / np.linalg.norm(direction)
    structures = []
    for t in np.linspace(0.0, span, n_points):
        copy = atoms.copy()
        positions = atoms.positions.copy()
        positions[atom] += (start + t) * unit
        copy.positions = positions
        structures.append(copy)
    return structures


def check_smoothness(
    potential: Potential,
    atoms: Atoms,
    *,
    atom: int = 0,
    direction: np.ndarray | None = None,
    start: float | None = None,
    span: float = 0.2,
    n_points: int = 101,
    max_neighbors: int | None = None,
    batch_size: int = 8,
) -> SmoothnessResult:
    """Move one atom in small steps and report the largest step-to-step jumps.

    Args:
        potential: the model.
        atoms: the structure (never modified).
        atom: index of the moving atom.
        direction: [3] direction of motion; default: away from the neighbour whose distance is
            closest to ``potential.r_max``, centred on the crossing of its cutoff sphere.
        start: offset (Å) of the first point along ``direction``; default ``-span / 2`` (or
            centred on the crossing when ``direction`` is None).
        span: path length in Å.
        n_points: structures along the path (>= 3).
        max_neighbors: hard neighbour cap passed to ``Potential.build_graph``.
        batch_size: structures per model call.

    Returns:
        A :class:`SmoothnessResult`.
    """
    if n_points < 3:
        raise ValueError(f"n_points must be >= 3, got {n_points}")
    if direction is None:
        direction, crossing = cutoff_crossing(atoms, atom, cutoff=potential.r_max)
        start = crossing - span / 2 if start is None else start
    start = -span / 2 if start is None else start
    structures = path_structures(
        atoms, atom, direction=direction, start=start, span=span, n_points=n_points
    )
    outputs = predict_each(
        potential, structures, batch_size=batch_size, max_neighbors=max_neighbors
    )
    energies = np.array([out.energy for out in outputs])  # [n_points] eV
    energy_steps = np.abs(np.diff(energies))  # [n_points - 1] eV
    energy_noise = 2.0 * np.median(np.abs(np.diff(energies, n=2)))  # eV
    forces = np.stack([out.computed_forces for out in outputs])  # [n_points, n_atoms, 3]
    force_steps = np.linalg.norm(np.diff(forces, axis=0), axis=2).max(axis=1)  # [n_points - 1]
    force_noise = 2.0 * np.median(np.linalg.norm(np.diff(forces, n=2, axis=0), axis=2).max(axis=1))
    step = span / (n_points - 1)
    return SmoothnessResult(
        atom=atom,
        n_points=n_points,
        step=step,
        max_energy_slope=float(energy_steps.max() / step),
        max_force_jump=float(force_steps.max()),
        energy_ratio=ratio(
            float(energy_steps.max()), float(max(np.median(energy_steps), energy_noise))
        ),
        force_ratio=ratio(
            float(force_steps.max()), float(max(np.median(force_steps), force_noise))
        ),
        max_neighbors=max_neighbors,
    )
