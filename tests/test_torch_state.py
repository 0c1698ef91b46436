"""The restoring contexts of macelerate._torch_state leave the process as they found it."""

from __future__ import annotations

import pytest
import torch

from macelerate._torch_state import _denormals_flushed, keep_subnormals


def test_keep_subnormals_undoes_a_flush_to_zero_switch_made_inside():
    if _denormals_flushed():
        pytest.skip("this process already flushes subnormals")
    with keep_subnormals():
        if not torch.set_flush_denormal(True):
            pytest.skip("this CPU cannot flush subnormals (no SSE3)")
        assert _denormals_flushed()  # what a C++ engine compiled with -ffast-math does
    assert not _denormals_flushed()
    assert float(torch.tensor(5e-324, dtype=torch.float64) * 1.0) > 0.0
