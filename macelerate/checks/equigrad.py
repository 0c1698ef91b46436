"""Equigrad: the gradient of the energy with respect to an infinitesimal rotation.

Following Orb-v3 (Rhodes et al. 2025, equation 1), positions and cell rows are rotated by
``R = exp(G - G^T)`` with ``G`` a [3, 3] generator at zero, and

    ||Δrot|| = ||∂E/∂G||_F  at G = 0.

A rotation-invariant energy gives exactly zero (about 1e-12 eV in float64 for MACE); a learned
non-invariant model gives a positive number. Since ``R = I + (G - G^T) + O(G²)``, the gradient is
``M - M^T`` with ``M = Σ_i (∂E/∂x_i) x_i^T`` (plus the cell's terms), i.e. the torque-like
antisymmetric part of the virial.

:func:`~macelerate.graph.rotation.equigrad_norm` (re-exported here) is generic over any
``energy_fn(positions, cell, shifts)`` and returns a tensor, so that the training loop can use
``equigrad_norm(..., create_graph=True) ** 2`` as a loss that pushes a non-invariant student
towards rotation invariance.
:func:`potential_energy_fn` adapts a :class:`~macelerate.models.potential.Potential` and a graph
to that form; :func:`equigrad` and :func:`check_equigrad` are the float wrappers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from macelerate._dtypes import dtype_name
from macelerate.checks._batching import ratio
from macelerate.checks.thresholds import EQUIGRAD_FLOOR_PER_ATOM, Tolerances, Verdict, judge
from macelerate.graph.rotation import EnergyFn, equigrad_norm, rotate_inputs
from macelerate.models.potential import Potential

__all__ = [
    "EnergyFn",
    "EquigradResult",
    "check_equigrad",
    "equigrad",
    "equigrad_norm",
    "graph_equigrad_norm",
    "potential_energy_fn",
    "rotate_inputs",
]


@dataclass(frozen=True)
class EquigradResult:
    """Equigrad of one structure or batch.

    Attributes:
        norm: max over structures of ||∂E/∂G||_F at G = 0, in eV.
        per_structure: ||∂E/∂G||_F of each structure, eV.
        scale: Σ_i |F_i| |x_i - x̄| in eV (largest structure value), the size torques could have.
        relative: ``norm / max(scale, n_atoms x 1 eV)`` (the floor keeps near-zero forces
            from inflating it).
        dtype: the model's float dtype.
    """

    norm: float
    per_structure: tuple[float, ...]
    scale: float
    relative: float
    dtype: str

    def verdicts(self, tolerances: Tolerances) -> list[Verdict]:
        """The relative equigrad against ``tolerances.equigrad_rel``."""
        hint = (
            "the energy changes under an infinitesimal rotation: the model is not "
            "rotation-invariant (see the rotation rows)"
        )
        return [judge("equigrad", "||dE/dG|| (rel)", self.relative, tolerances.equigrad_rel,
                      hint=hint)]  # fmt: skip


def potential_energy_fn(potential: Potential, graph: dict[str, torch.Tensor]) -> EnergyFn:
    """``energy_fn`` for :func:`equigrad_norm` from a Potential's model and one of its graphs.

    Each call feeds a shallow copy of ``graph`` with the given positions, cell and shifts to
    ``potential.model(..., training=True, compute_force=False)``; ``graph`` is never modified.
    """

    def energy_fn(
        positions: torch.Tensor, cell: torch.Tensor, shifts: torch.Tensor
    ) -> torch.Tensor:
        data = dict(graph)
        data.update(positions=positions, cell=cell, shifts=shifts)
        return potential.model(data, training=True, compute_force=False)["energy"]

    return energy_fn


def graph_equigrad_norm(
    potential: Potential, graph: dict[str, torch.Tensor], *, create_graph: bool = False
) -> torch.Tensor:
    """[n_graphs] equigrad norms (eV) of a graph batch from ``potential.build_graph``."""
    return equigrad_norm(
        potential_energy_fn(potential, graph),
        graph["positions"].detach(),
        graph["cell"],
        graph["unit_shifts"],
        batch=graph["batch"],
        edge_graph=graph["batch"][graph["edge_index"][1]],
        create_graph=create_graph,
    )


def equigrad(potential: Potential, atoms: Atoms | Sequence[Atoms]) -> float:
    """The largest equigrad norm (eV) over the given structures, as a float."""
    return float(graph_equigrad_norm(potential, potential.build_graph(atoms)).max())


def check_equigrad(potential: Potential, atoms: Atoms) -> EquigradResult:
    """Equigrad of one structure with a force-moment scale to judge its size."""
    graph = potential.build_graph(atoms)
    norms = graph_equigrad_norm(potential, graph).detach().double().cpu().numpy()
    forces = potential.forward(graph)["forces"].double().cpu().numpy()
    offsets = atoms.positions - atoms.positions.mean(axis=0)
    scale = float(np.sum(np.linalg.norm(forces, axis=1) * np.linalg.norm(offsets, axis=1)))
    norm = float(norms.max())
    return EquigradResult(
        norm=norm,
        per_structure=tuple(float(n) for n in norms),
        scale=scale,
        relative=ratio(norm, max(scale, EQUIGRAD_FLOOR_PER_ATOM * len(atoms))),
        dtype=dtype_name(potential.dtype),
    )
