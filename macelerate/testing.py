"""Reusable helpers for tests: tiny mace-torch models and a conformance check for Potentials."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms

from macelerate.models.config import build_mace_model


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
) -> dict:
    """Constructor arguments (JSON-safe, as in checkpoints) of a small random ScaleShiftMACE."""
    hidden = "+".join(f"{channels}x{ell}{'eo'[ell % 2]}" for ell in range(max_L + 1))
    n = len(atomic_numbers)
    return {
        "model_class": "ScaleShiftMACE",
        "dtype": dtype,
        "r_max": r_max,
        "num_bessel": 6,
        "num_polynomial_cutoff": 5,
        "max_ell": max_ell,
        "interaction_cls": "RealAgnosticResidualInteractionBlock",
        "interaction_cls_first": "RealAgnosticResidualInteractionBlock",
        "readout_cls": "NonLinearReadoutBlock",
        "num_interactions": num_interactions,
        "num_elements": n,
        "hidden_irreps": hidden,
        "MLP_irreps": "8x0e",
        "gate": "silu",
        "atomic_energies": [-1.0 - 0.5 * i for i in range(n)],
        "avg_num_neighbors": 8.0,
        "atomic_numbers": list(atomic_numbers),
        "correlation": correlation,
        "radial_MLP": [16, 16],
        "atomic_inter_scale": 1.0,
        "atomic_inter_shift": 0.0,
        "use_reduced_cg": False,
    }


def tiny_mace(atomic_numbers: Sequence[int], *, seed: int = 0, **options) -> torch.nn.Module:
    """A small random ScaleShiftMACE (8 channels, L<=1 by default) for fast tests."""
    torch.manual_seed(seed)
    return build_mace_model(tiny_mace_config(atomic_numbers, **options)).eval()


def rotation_matrix(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random proper rotation [3, 3]."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


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
