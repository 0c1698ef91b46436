"""Training losses: energy per atom, forces, stress, Hessian rows, confidence and equigrad.

Every function is pure (no module state); :func:`compute_loss` combines the terms whose weight is
positive and whose labels the batch has. Regression terms use the Huber loss with ``huber_delta``
(``torch.nn.functional.huber_loss``: ``0.5 x²`` for ``|x| < δ``, ``δ (|x| - δ/2)`` beyond) or, with
``huber_delta=None``, the mean squared error ``x²``; both are means over components.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from macelerate.train.data import Batch, HessianBlock
from macelerate.train.errors import TrainConfigError


@dataclass(frozen=True)
class LossWeights:
    """Weights of the loss terms (0 switches a term off).

    Attributes:
        energy: on the per-atom energy error (eV/atom).
        forces: on force components (eV/Å).
        stress: on stress components (eV/Å³), structures with a stress label only.
        hessian: on labelled Hessian rows (eV/Å²); costs one double backward per row index.
        confidence: cross-entropy of a confidence head's logits against the binned per-atom
            force-error norm (only for models that output ``confidence_logits``).
        equigrad: on the mean squared equigrad norm (eV²), see :mod:`macelerate.checks.equigrad`.
        huber_delta: Huber threshold in the unit of each term; ``None`` for mean squared error.
    """

    energy: float = 1.0
    forces: float = 10.0
    stress: float = 0.0
    hessian: float = 0.0
    confidence: float = 0.1
    equigrad: float = 0.0
    huber_delta: float | None = 0.01

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise TrainConfigError(
                    f"loss weight {name} must be a finite number >= 0 (0 switches the term off), "
                    f"got {value}"
                )
        if self.huber_delta is not None and self.huber_delta <= 0:
            raise TrainConfigError(
                f"huber_delta (--huber-delta) must be > 0, or None/'none' for MSE; got "
                f"{self.huber_delta}"
            )

    @classmethod
    def from_dict(cls, data: dict) -> LossWeights:
        """Build from plain data; unknown keys raise :class:`TrainConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainConfigError(f"unknown LossWeights keys {unknown}; known: {sorted(known)}")
        return cls(**data)


def regression_loss(
    prediction: torch.Tensor, target: torch.Tensor, *, huber_delta: float | None
) -> torch.Tensor:
    """Mean Huber loss (``huber_delta``) or mean squared error (``None``) over all elements."""
    if prediction.numel() == 0:
        return prediction.sum() * 0.0
    if huber_delta is None:
        return F.mse_loss(prediction, target)
    return F.huber_loss(prediction, target, delta=huber_delta)


def energy_loss(
    energy: torch.Tensor,
    reference: torch.Tensor,
    n_atoms: torch.Tensor,
    *,
    huber_delta: float | None,
) -> torch.Tensor:
    """Loss on per-atom energies: energy, reference [G] eV, n_atoms [G]."""
    n = n_atoms.to(energy.dtype)
    return regression_loss(energy / n, reference / n, huber_delta=huber_delta)


def stress_loss(
    stress: torch.Tensor,
    reference: torch.Tensor,
    mask: torch.Tensor,
    *,
    huber_delta: float | None,
) -> torch.Tensor:
    """Loss on stress components [G, 3, 3] eV/Å³ of the structures where ``mask`` [G] is True."""
    return regression_loss(stress[mask], reference[mask], huber_delta=huber_delta)


def confidence_targets(
    forces: torch.Tensor, reference: torch.Tensor, bins: torch.Tensor, n_bins: int
) -> torch.Tensor:
    """Bin index [N] of each atom's force-error norm ``|F_pred - F_ref|`` (eV/Å).

    Args:
        forces, reference: [N, 3] eV/Å (``forces`` is detached here).
        bins: bin edges in eV/Å: either the ``n_bins - 1`` inner edges or all ``n_bins + 1``
            edges (the outer two are then ignored: errors below/above land in the end bins).
        n_bins: number of logits per atom.
    """
    bins = bins.to(device=forces.device, dtype=forces.dtype)
    if bins.numel() == n_bins + 1:
        bins = bins[1:-1]
    if bins.numel() != n_bins - 1:
        raise ValueError(
            f"confidence_bins has {bins.numel()} edges for {n_bins} logits; expected "
            f"{n_bins - 1} inner or {n_bins + 1} outer+inner edges"
        )
    error = torch.linalg.vector_norm(forces.detach() - reference, dim=1)  # [N] eV/Å
    return torch.bucketize(error, bins)


def confidence_loss(
    logits: torch.Tensor, forces: torch.Tensor, reference: torch.Tensor, bins: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of ``logits`` [N, n_bins] against :func:`confidence_targets`."""
    targets = confidence_targets(forces, reference, bins, logits.shape[1])
    return F.cross_entropy(logits, targets)


def hessian_rows_autograd(
    forces: torch.Tensor,
    positions: torch.Tensor,
    blocks: Sequence[HessianBlock],
    *,
    create_graph: bool,
) -> list[torch.Tensor]:
    """Rows of ``H = d²E/dx² = -dF/dx`` for the coordinates each block lists.

    Structures of a batch do not interact, so row ``j`` of every block comes from one backward
    pass of ``sum_g F_g[coordinate_j]``: the number of passes is the largest ``k``, not the total.

    Args:
        forces: [N, 3] eV/Å, computed with a graph back to ``positions``.
        positions: [N, 3] Å, the tensor the forces were differentiated from.
        blocks: which coordinates to differentiate, per structure.
        create_graph: keep the graph (to train on the rows).

    Returns:
        One [3k, 3 n_atoms_g] tensor (eV/Å²) per block.
    """
    flat = forces.reshape(-1)
    k_max = max(int(b.coordinates.numel()) for b in blocks)
    rows: list[list[torch.Tensor]] = [[] for _ in blocks]
    for j in range(k_max):
        active = [n for n, b in enumerate(blocks) if j < b.coordinates.numel()]
        picked = flat[torch.stack([blocks[n].coordinates[j] for n in active])].sum()
        (grad,) = torch.autograd.grad(
            picked, positions, create_graph=create_graph, retain_graph=True, allow_unused=True
        )
        if grad is None:
            raise ValueError(
                "the forces do not depend on the positions tensor given (does the model detach "
                "graph['positions']?); Hessian rows need forces differentiable in positions"
            )
        for n in active:
            start = blocks[n].start
            rows[n].append(-grad[start : start + blocks[n].n_atoms].reshape(-1))
    return [torch.stack(r) for r in rows]


def hessian_loss(
    forces: torch.Tensor,
    positions: torch.Tensor,
    blocks: Sequence[HessianBlock],
    *,
    huber_delta: float | None,
) -> torch.Tensor:
    """Loss on labelled Hessian rows (eV/Å²), differentiable in the model parameters."""
    predicted = hessian_rows_autograd(forces, positions, blocks, create_graph=True)
    reference = []
    for block in blocks:
        if block.rows is None:
            raise ValueError("a Hessian loss needs the reference rows of every block")
        reference.append(block.rows.reshape(-1))
    return regression_loss(
        torch.cat([p.reshape(-1) for p in predicted]),
        torch.cat(reference),
        huber_delta=huber_delta,
    )


def compute_loss(
    outputs: dict[str, torch.Tensor],
    batch: Batch,
    weights: LossWeights,
    *,
    positions: torch.Tensor | None = None,
    confidence_bins: torch.Tensor | None = None,
    equigrad_norms: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Loss terms of one batch and their weighted sum.

    Args:
        outputs: the model's outputs (``energy`` [G], ``forces`` [N, 3], optional ``stress``
            [G, 3, 3] and ``confidence_logits`` [N, n_bins]).
        batch: the labels.
        weights: term weights and Huber threshold.
        positions: [N, 3] the positions tensor the forces depend on (needed for Hessian rows).
        confidence_bins: bin edges (eV/Å) of a confidence head.
        equigrad_norms: [G] equigrad norms (eV) computed with ``create_graph=True``.

    Returns:
        Unweighted terms (``energy``, ``forces``, ``stress``, ``hessian``, ``confidence``,
        ``equigrad``: those computed) and ``total``, the weighted sum.
    """
    delta = weights.huber_delta
    terms: dict[str, torch.Tensor] = {}
    if weights.energy > 0 and batch.energy is not None:
        terms["energy"] = energy_loss(
            outputs["energy"], batch.energy, batch.n_atoms, huber_delta=delta
        )
    if weights.forces > 0 and batch.forces is not None:
        terms["forces"] = regression_loss(outputs["forces"], batch.forces, huber_delta=delta)
    stress, mask, predicted = batch.stress, batch.stress_mask, outputs.get("stress")
    if weights.stress > 0 and stress is not None and mask is not None and predicted is not None:
        terms["stress"] = stress_loss(predicted, stress, mask, huber_delta=delta)
    if weights.hessian > 0 and batch.hessian:
        if positions is None:
            raise ValueError("Hessian rows need the positions tensor the forces depend on")
        terms["hessian"] = hessian_loss(
            outputs["forces"], positions, batch.hessian, huber_delta=delta
        )
    logits = outputs.get("confidence_logits")
    if weights.confidence > 0 and logits is not None and batch.forces is not None:
        if confidence_bins is None:
            raise ValueError("the model outputs confidence_logits but has no confidence_bins")
        terms["confidence"] = confidence_loss(
            logits, outputs["forces"], batch.forces, confidence_bins
        )
    if weights.equigrad > 0 and equigrad_norms is not None:
        terms["equigrad"] = (equigrad_norms**2).mean()
    if not terms:
        raise ValueError(
            "no loss term applies: give labels for a term with a positive weight "
            f"(weights {asdict(weights)})"
        )
    terms["total"] = sum(getattr(weights, name) * value for name, value in terms.items())
    return terms
