"""Rotations of structures and graph tensors, and the energy's gradient under rotation.

* :func:`rotation_matrix`: a uniformly random proper rotation, for symmetry checks and tests.
* :func:`rotate_inputs`: positions, cell and shift vectors of a graph batch rotated by
  ``R = exp(G - G^T)`` per structure, differentiably in the generator ``G`` [n_graphs, 3, 3].
* :func:`equigrad_norm`: ``||∂E/∂G||_F`` at ``G = 0`` (Orb-v3, Rhodes et al. 2025, equation 1):
  zero for a rotation-invariant energy; a tensor, so training can use it as a loss.

Pure tensor maths over any ``energy_fn``; :mod:`macelerate.checks.equigrad` applies it to a
Potential and :mod:`macelerate.train.steps` to a model in training.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

EnergyFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``energy_fn(positions [n_atoms, 3], cell [3G, 3], shifts [n_edges, 3]) -> energies [G]`` eV."""


def rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation [3, 3]."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


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

    Since ``R = I + (G - G^T) + O(G²)``, the gradient is ``M - M^T`` with
    ``M = Σ_i (∂E/∂x_i) x_i^T`` (plus the cell's terms): the antisymmetric part of the virial.

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
    dtype, device = positions.dtype, positions.device
    if cell is None:
        cell = torch.zeros(3, 3, dtype=dtype, device=device)
    if unit_shifts is None:
        unit_shifts = torch.zeros(0, 3, dtype=dtype, device=device)
    n_graphs = cell.shape[0] // 3
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=device)
    if edge_graph is None:
        edge_graph = torch.zeros(unit_shifts.shape[0], dtype=torch.int64, device=device)
    generator = torch.zeros(n_graphs, 3, 3, requires_grad=True, dtype=dtype, device=device)
    with torch.enable_grad():
        new_inputs = rotate_inputs(
            generator, positions, cell, unit_shifts, batch=batch, edge_graph=edge_graph
        )
        energy = energy_fn(*new_inputs)
        (gradient,) = torch.autograd.grad(energy.sum(), generator, create_graph=create_graph)
    return torch.linalg.matrix_norm(gradient)  # [n_graphs]
