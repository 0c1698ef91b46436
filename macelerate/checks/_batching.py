"""Per-structure model outputs of many structures, evaluated a few structures at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from macelerate.models.potential import Potential


def nan_max(values: Sequence[float]) -> float:
    """The largest value, NaN if any is NaN (Python's ``max`` would skip NaN), 0 if empty."""
    return float(np.max(np.asarray(values, dtype=np.float64), initial=0.0))


@dataclass(frozen=True)
class StructureOutput:
    """Outputs of one structure.

    Attributes:
        energy: total energy in eV.
        forces: [n_atoms, 3] eV/Å, or None when not computed.
        stress: [3, 3] eV/Å³ (ASE sign convention), or None when not computed.
    """

    energy: float
    forces: np.ndarray | None
    stress: np.ndarray | None

    @property
    def computed_forces(self) -> np.ndarray:
        """``forces`` [n_atoms, 3] eV/Å; ValueError if they were not computed."""
        if self.forces is None:
            raise ValueError("forces were not computed for this structure (compute_forces=False)")
        return self.forces

    @property
    def computed_stress(self) -> np.ndarray:
        """``stress`` [3, 3] eV/Å³; ValueError if it was not computed."""
        if self.stress is None:
            raise ValueError("stress was not computed for this structure (compute_stress=False)")
        return self.stress


def predict_each(
    potential: Potential,
    structures: Sequence[Atoms],
    *,
    compute_forces: bool = True,
    compute_stress: bool = False,
    batch_size: int = 4,
    max_neighbors: int | None = None,
) -> list[StructureOutput]:
    """Energy, forces (and stress) of every structure, ``batch_size`` structures per model call.

    Args:
        potential: the model.
        structures: structures to evaluate (never modified).
        compute_forces: compute forces (energies alone skip the backward pass).
        compute_stress: also compute stress (every structure must be periodic in 3D).
        batch_size: structures per model call (bounds memory for large structures).
        max_neighbors: optional hard neighbour cap passed to ``Potential.build_graph``.

    Returns:
        One :class:`StructureOutput` per structure, in input order, as float64 numpy.
    """
    outputs: list[StructureOutput] = []
    for start in range(0, len(structures), batch_size):
        chunk = list(structures[start : start + batch_size])
        graph = potential.build_graph(chunk, max_neighbors=max_neighbors)
        out = potential.forward(graph, compute_forces=compute_forces, compute_stress=compute_stress)
        energy = out["energy"].double().cpu().numpy()
        forces = out["forces"].double().cpu().numpy() if compute_forces else None
        stress = out["stress"].double().cpu().numpy() if compute_stress else None
        ptr = graph["ptr"].cpu().numpy()
        for i in range(len(chunk)):
            outputs.append(
                StructureOutput(
                    energy=float(energy[i]),
                    forces=None if forces is None else forces[ptr[i] : ptr[i + 1]],
                    stress=None if stress is None else stress[i],
                )
            )
    return outputs


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, 0 for 0/0, inf for x/0, NaN if either is NaN."""
    if np.isnan(numerator) or np.isnan(denominator):
        return float("nan")
    if denominator > 0:
        return numerator / denominator
    return 0.0 if numerator == 0 else float("inf")
