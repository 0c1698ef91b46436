"""One batch through a trainable model: forward with fresh positions, the loss, and validation.

See :mod:`macelerate.train.loop` for the trainable-model contract.
"""

from __future__ import annotations

import math

import torch

from macelerate.graph.rotation import equigrad_norm
from macelerate.train.data import Batch, LabelledData
from macelerate.train.losses import LossWeights, compute_loss


def forward_batch(
    model: torch.nn.Module, batch: Batch, *, training: bool, compute_stress: bool
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Outputs on ``batch`` and the positions tensor [N, 3] they were differentiated from.

    The model gets a shallow copy of the graph with fresh positions, so the cached graph is
    never changed (mace-torch sets ``requires_grad`` on ``positions`` in place).
    """
    data = dict(batch.graph)
    positions = batch.graph["positions"].detach().clone().requires_grad_(True)
    data["positions"] = positions
    with torch.enable_grad():
        out = model(data, training=training, compute_force=True, compute_stress=compute_stress)
    return out, positions


def equigrad_norms(model: torch.nn.Module, graph: dict[str, torch.Tensor]) -> torch.Tensor:
    """[G] equigrad norms (eV) of ``model`` on ``graph``, differentiable in the parameters."""

    def energy_fn(positions: torch.Tensor, cell: torch.Tensor, shifts: torch.Tensor):
        data = dict(graph)
        data.update(positions=positions, cell=cell, shifts=shifts)
        return model(data, training=True, compute_force=False, compute_stress=False)["energy"]

    return equigrad_norm(
        energy_fn, graph["positions"].detach(), graph["cell"], graph["unit_shifts"],
        batch=graph["batch"], edge_graph=graph["batch"][graph["edge_index"][1]],
        create_graph=True,
    )  # fmt: skip


def batch_loss(
    model: torch.nn.Module, batch: Batch, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """The loss terms (:func:`compute_loss`) of ``model`` on ``batch``, ready for backward."""
    want_stress = weights.stress > 0 and batch.stress is not None
    out, positions = forward_batch(model, batch, training=True, compute_stress=want_stress)
    norms = equigrad_norms(model, batch.graph) if weights.equigrad > 0 else None
    return compute_loss(
        out, batch, weights, positions=positions,
        confidence_bins=getattr(model, "confidence_bins", None), equigrad_norms=norms,
    )  # fmt: skip


@torch.no_grad()
def _accumulate(out: dict, batch: Batch, sums: dict[str, float]) -> None:
    if batch.energy is not None:
        per_atom = (out["energy"].detach() - batch.energy) / batch.n_atoms
        sums["e2"] += float((per_atom.double() ** 2).sum())
        sums["ne"] += per_atom.numel()
    if batch.forces is not None:
        sums["f2"] += float(((out["forces"].detach() - batch.forces).double() ** 2).sum())
        sums["nf"] += batch.forces.numel()


def validate(
    model: torch.nn.Module, data: LabelledData, *, batch_size: int, weights: LossWeights
) -> dict[str, float | None]:
    """RMSE of energy per atom (meV/atom) and force components (meV/Å), and an MSE loss."""
    was_training = model.training
    model.eval()
    sums = {"e2": 0.0, "ne": 0, "f2": 0.0, "nf": 0}
    device = next(model.parameters()).device
    for batch in data.batches(batch_size, device=device):
        out, _ = forward_batch(model, batch, training=False, compute_stress=False)
        _accumulate(out, batch, sums)
    model.train(was_training)
    e_mse = sums["e2"] / sums["ne"] if sums["ne"] else None
    f_mse = sums["f2"] / sums["nf"] if sums["nf"] else None
    loss = weights.energy * (e_mse or 0.0) + weights.forces * (f_mse or 0.0)
    return {
        "val_energy_rmse": None if e_mse is None else 1e3 * math.sqrt(e_mse),
        "val_forces_rmse": None if f_mse is None else 1e3 * math.sqrt(f_mse),
        "val_loss": loss,
    }
