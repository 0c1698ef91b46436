"""Equigrad: the gradient of the energy with respect to an infinitesimal rotation.

Following Orb-v3 (Rhodes et al. 2025, equation 1), positions and cell rows are rotated by
``R = exp(G - G^T)`` with ``G`` a [3, 3] generator at zero, and

    ||Δrot|| = ||∂E/∂G||_F  at G = 0.

A rotation-invariant energy gives exactly zero (about 1e-12 eV in float64 for MACE); a learned
non-invariant model gives a positive number. Since ``R = I + (G - G^T) + O(G²)``, the gradient is
``M - M^T`` with ``M = Σ_i (∂E/∂x_i) x_i^T`` (plus the cell's terms), i.e. the torque-like
antisymmetric part of the virial.

:func:`equigrad_norm` is generic over any ``energy_fn(positions, cell, shifts)`` and returns a
tensor, so that a later training loop can use ``equigrad_norm(..., create_graph=True) ** 2`` as a
loss that pushes a non-invariant student towards rotation invariance.
:func:`potential_energy_fn` adapts a :class:`~macelerate.models.potential.Potential` and a graph
to that form; :func:`equigrad` and :func:`check_equigrad` are the float wrappers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from macelerate.checks._batching import ratio
from macelerate.checks.thresholds import EQUIGRAD_FLOOR_PER_ATOM, Tolerances, Verdict, judge
from macelerate.models.potential import Potential

EnergyFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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


def rotate_inputs(
    generator: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    unit_shifts: torch.Tensor,
    *,
    batch: torch.Tensor,
    edge_graph: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotate every structure of a batch by ``R_g = exp(G_g - G_g^T)``, differentiably in ``G``.

    Args:
        generator: [n_graphs, 3, 3] generators G.
        positions: [n_atoms, 3] Å.
        cell: [3 * n_graphs, 3] lattice vectors as rows, Å.
        unit_shifts: [n_edges, 3] integer image offsets (float dtype).
        batch: [n_atoms] structure index of each atom.
        edge_graph: [n_edges] structure index of each edge.

    Returns:
        positions ``x @ R^T`` [n_atoms, 3], cell ``cell @ R^T`` [3 * n_graphs, 3] and shifts
        ``unit_shifts @ cell_new`` [n_edges, 3] of each edge's structure.
    """
    rotation = torch.linalg.matrix_exp(generator - generator.transpose(1, 2))  # [G, 3, 3]
    new_positions = torch.einsum("nj,nij->ni", positions, rotation[batch])
    new_cell = torch.einsum("gaj,gij->gai", cell.reshape(-1, 3, 3), rotation)  # [G, 3, 3]
    new_shifts = torch.einsum("ea,eaj->ej", unit_shifts, new_cell[edge_graph])
    return new_positions, new_cell.reshape(-1, 3), new_shifts


def equigrad_norm(
    energy_fn: EnergyFn,
    positions: torch.Tensor,
    cell: torch.Tensor | None = None,
    unit_shifts: torch.Tensor | None = None,
    *,
    batch: torch.Tensor | None = None,
    edge_graph: torch.Tensor | None = None,
    create_graph: bool = False,
) -> torch.Tensor:
    """||∂E/∂G||_F at G = 0 for every structure, as a tensor (differentiable if asked).

    Args:
        energy_fn: ``energy_fn(positions [n_atoms, 3], cell [3G, 3], shifts [n_edges, 3])`` ->
            energies [n_graphs] (or a scalar for one structure), eV. It must compute the energy
            from the tensors it is given (they carry the dependence on G).
        positions: [n_atoms, 3] Å.
        cell: [3 * n_graphs, 3] Å; default: zeros for one structure (molecules).
        unit_shifts: [n_edges, 3] integer image offsets; default: no edges ([0, 3]).
        batch: [n_atoms] structure of each atom; default: all in structure 0.
        edge_graph: [n_edges] structure of each edge; default: all in structure 0.
        create_graph: keep the graph of the gradient, to use the result as a training loss
            (then gradients flow into the parameters ``energy_fn`` closes over).

    Returns:
        [n_graphs] Frobenius norms in eV.
    """
    options = {"dtype": positions.dtype, "device": positions.device}
    if cell is None:
        cell = torch.zeros(3, 3, **options)
    if unit_shifts is None:
        unit_shifts = torch.zeros(0, 3, **options)
    n_graphs = cell.shape[0] // 3
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
    if edge_graph is None:
        edge_graph = torch.zeros(unit_shifts.shape[0], dtype=torch.int64, device=positions.device)
    generator = torch.zeros(n_graphs, 3, 3, requires_grad=True, **options)
    with torch.enable_grad():
        new_inputs = rotate_inputs(
            generator, positions, cell, unit_shifts, batch=batch, edge_graph=edge_graph
        )
        energy = energy_fn(*new_inputs)
        (gradient,) = torch.autograd.grad(energy.sum(), generator, create_graph=create_graph)
    return torch.linalg.matrix_norm(gradient)  # [n_graphs]


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
        dtype=str(potential.dtype).removeprefix("torch."),
    )
