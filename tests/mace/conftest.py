"""Tiny models of both interaction-block kinds, shared by the tests of ``macelerate.mace``."""

from __future__ import annotations

import pytest
import torch

from macelerate.mace.config import build_mace_model
from macelerate.testing import tiny_mace, tiny_mace_config

Z = [1, 6, 8]


@pytest.fixture(scope="module")
def residual() -> torch.nn.Module:
    """Residual interaction blocks throughout (mace-torch's usual non-first blocks)."""
    return tiny_mace(Z, seed=1, correlation=3)


@pytest.fixture(scope="module")
def selector() -> torch.nn.Module:
    """A non-residual first block (mace-torch's default first block), residual after it."""
    config = tiny_mace_config(Z) | {"interaction_cls_first": "RealAgnosticInteractionBlock"}
    torch.manual_seed(2)
    return build_mace_model(config).eval()
