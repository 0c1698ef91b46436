"""Helpers shared by the training tests: small rattled structures labelled by a tiny teacher."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a test module's torch code on one thread, restoring the setting afterwards.

    The 2-core test machine is shared: two OpenMP threads competing with other processes made
    these small training steps 5-7x slower (measured: 239 s vs 31-43 s for the training tests).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def rattled(atoms: Atoms, n: int, *, std: float = 0.1, seed: int = 0) -> list[Atoms]:
    """``n`` copies of ``atoms`` with Gaussian displacements of ``std`` Å."""
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(n):
        copy = atoms.copy()
        copy.positions = copy.positions + rng.normal(0.0, std, copy.positions.shape)
        copies.append(copy)
    return copies


def ethanols(n: int, *, seed: int = 0) -> list[Atoms]:
    """``n`` rattled ethanol molecules (9 atoms, H/C/O, non-periodic)."""
    return rattled(molecule("CH3CH2OH"), n, seed=seed)


def silicon_cells(n: int, *, seed: int = 0) -> list[Atoms]:
    """``n`` rattled periodic 2-atom silicon cells."""
    return rattled(bulk("Si", "diamond", a=5.43), n, std=0.05, seed=seed)
