"""Reusable helpers for tests: tiny mace-torch models and a conformance check for Potentials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms

from macelerate.graph.rotation import rotation_matrix
from macelerate.mace.config import build_mace_model, scale_shift_mace_config

__all__ = ["numeric_forces", "rotation_matrix", "tiny_mace", "tiny_mace_config"]


def tiny_mace_config(
    atomic_numbers: Sequence[int],
    *,
    channels: int = 8,
    max_L: int = 1,
    max_ell: int = 2,
    correlation: int = 2,
    num_interactions: int = 2,
    r_max: float = 4.0,
    dtype: str = "float64",
) -> dict[str, Any]:
    """Constructor arguments (JSON-safe, as in checkpoints) of a small random ScaleShiftMACE."""
    return scale_shift_mace_config(
        atomic_numbers=atomic_numbers,
        atomic_energies=[-1.0 - 0.5 * i for i in range(len(atomic_numbers))],
        channels=channels, max_L=max_L, max_ell=max_ell, correlation=correlation,
        num_interactions=num_interactions, r_max=r_max, radial_mlp=(16, 16), mlp_channels=8,
        num_bessel=6, num_polynomial_cutoff=5, avg_num_neighbors=8.0, dtype=dtype,
    )  # fmt: skip


def tiny_mace(atomic_numbers: Sequence[int], *, seed: int = 0, **options) -> torch.nn.Module:
    """A small random ScaleShiftMACE (8 channels, L<=1 by default) for fast tests."""
    torch.manual_seed(seed)
    return build_mace_model(tiny_mace_config(atomic_numbers, **options)).eval()


def numeric_forces(
    potential, atoms: Atoms, *, indices: Sequence[int], delta: float = 1e-4
) -> np.ndarray:
    """Central finite-difference forces [len(indices), 3] in eV/Å of selected atoms."""
    forces = np.zeros((len(indices), 3))
    for row, i in enumerate(indices):
        for k in range(3):
            energies = []
            for sign in (1.0, -1.0):
                shifted = atoms.copy()
                shifted.positions[i, k] += sign * delta
                energies.append(potential.predict(shifted, compute_stress=False).energy[0])
            forces[row, k] = -(energies[0] - energies[1]) / (2 * delta)
    return forces
