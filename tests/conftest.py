"""Shared fixtures: tiny models built in-process, small structures, the shared data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule

from macelerate.testing import tiny_mace

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip with a reason when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model() -> torch.nn.Module:
    """A random 8-channel L<=1 MACE for H, C, O, Si (float64, r_max 4 Å)."""
    return tiny_mace([1, 6, 8, 14])


@pytest.fixture(scope="session")
def tiny_model_file(tmp_path_factory, tiny_model) -> Path:
    """The tiny model saved the way mace-torch saves models: a pickled whole module."""
    path = tmp_path_factory.mktemp("models") / "tiny.model"
    torch.save(tiny_model, path)
    return path


@pytest.fixture
def silicon() -> Atoms:
    """A rattled 8-atom periodic diamond Si cell."""
    atoms = bulk("Si", "diamond", a=5.43, cubic=True)
    atoms.rattle(0.05, rng=np.random.default_rng(1))
    return atoms


@pytest.fixture
def ethanol() -> Atoms:
    """A non-periodic ethanol molecule."""
    return molecule("CH3CH2OH")
