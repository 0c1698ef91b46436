"""Random-rotation data augmentation: each structure of a batch turned by its own rotation.

The alternative to the equigrad loss for models that are not rotation invariant by construction
(a student's ``cartesian`` layers): the labels rotate with the structure (forces ``F R^T``,
stress ``R σ R^T``), so the model sees every orientation of the same physics. Rotations are
drawn from a generator seeded by the run's seed and step, so a resumed run draws the same ones.
"""

from __future__ import annotations

import dataclasses

import torch

from macelerate.train.data import Batch
from macelerate.train.errors import TrainConfigError


def random_rotations(
    n: int, *, seed: int, dtype: torch.dtype, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """[n, 3, 3] uniformly random proper rotations (Haar measure, QR of Gaussian matrices)."""
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)  # unique: diag(r) > 0
    q = torch.where(torch.linalg.det(q)[:, None, None] < 0, -q, q)  # proper rotations
    return q.to(dtype=dtype, device=device)


def rotate_batch(batch: Batch, rotations: torch.Tensor) -> Batch:
    """A copy of ``batch`` with structure g rotated by ``rotations[g]`` [G, 3, 3], labels too.

    Positions ``x R^T``, cell rows ``a R^T``, shifts ``unit_shifts @ cell'``, forces ``F R^T``,
    stress ``R σ R^T``. Energies are unchanged. The input batch is not modified.

    Raises:
        TrainConfigError: the batch has Hessian-row labels (a row of one Cartesian component
            would need the other two after rotation).
    """
    if batch.hessian:
        raise TrainConfigError(
            "rotation augmentation cannot rotate Hessian-row labels; drop --rotation-augment or "
            "--hessian-rows (use the equigrad loss instead)"
        )
    graph = dict(batch.graph)
    rotations = rotations.to(graph["positions"].dtype)
    atom_graph = graph["batch"]
    edge_graph = atom_graph[graph["edge_index"][1]]
    per_atom = rotations[atom_graph]  # [N, 3, 3]
    graph["positions"] = torch.einsum("nij,nj->ni", per_atom, graph["positions"])
    cell = torch.einsum("gij,gaj->gai", rotations, graph["cell"].reshape(-1, 3, 3))  # [G, 3, 3]
    graph["cell"] = cell.reshape(-1, 3)
    graph["shifts"] = torch.einsum("ea,eaj->ej", graph["unit_shifts"], cell[edge_graph])
    forces = batch.forces
    if forces is not None:
        forces = torch.einsum("nij,nj->ni", per_atom.to(forces.dtype), forces)
    stress = batch.stress
    if stress is not None:
        turn = rotations.to(stress.dtype)
        stress = turn @ stress @ turn.transpose(1, 2)
    return dataclasses.replace(batch, graph=graph, forces=forces, stress=stress)
