"""The thin Potential: facts read off its model, transforms as new Potentials, bounded batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import macelerate.runtime.allocator as allocator
from macelerate import load
from macelerate.errors import StructureError
from macelerate.models.potential import Potential


def test_dtype_and_device_follow_the_model(tiny_model):
    potential = load(tiny_model)
    assert potential.dtype == torch.float64 and potential.device == torch.device("cpu")
    potential.to(torch.float32)
    assert potential.dtype == torch.float32  # read off the model, never stale


def test_constructor_stores_and_transforms_are_recorded(tiny_model):
    plain = Potential.from_module(tiny_model)
    assert plain.model is not tiny_model and plain.transforms == () and plain.fused_blocks == 0
    wrapped = Potential(plain.model)
    assert wrapped.model is plain.model  # the constructor copies nothing
    loaded = load(tiny_model, precision="fp32")
    assert [record.name for record in loaded.transforms] == ["fuse", "precision"]
    assert loaded.fused_blocks == 2 and loaded.precision is not None


def test_predict_in_batches_equals_one_batch(tiny_model, silicon, ethanol):
    potential = load(tiny_model)
    structures = [silicon, ethanol, silicon.copy(), ethanol.copy()]
    whole = potential.predict(structures, compute_stress=False)
    split = potential.predict(structures, compute_stress=False, max_batch_atoms=9)
    np.testing.assert_allclose(split.energy, whole.energy, rtol=0, atol=1e-12)
    np.testing.assert_allclose(split.forces, whole.forces, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(split.ptr, whole.ptr)


def test_batch_errors_name_the_structure_in_the_whole_list(tiny_model, ethanol):
    bad = ethanol.copy()
    bad.positions[2] = np.nan
    with pytest.raises(StructureError, match="structure 3 "):
        load(tiny_model).predict([ethanol, ethanol, ethanol, bad], max_batch_atoms=10)


def test_large_steps_hand_the_heap_back(monkeypatch):
    calls = []

    class FakeLibc:
        def malloc_trim(self, pad):
            calls.append(pad)
            return 1

    monkeypatch.setattr(allocator, "_libc", FakeLibc)
    monkeypatch.setattr(allocator, "_STATE", allocator.AllocatorTuning(True))
    assert allocator.release_heap_after(allocator.RELEASE_AFTER_BYTES) is False
    assert allocator.release_heap_after(allocator.RELEASE_AFTER_BYTES + 1) is True
    assert calls == [0]
    monkeypatch.setattr(allocator, "_STATE", allocator.AllocatorTuning(False, "refused"))
    assert allocator.release_heap_after(10**12) is False and calls == [0]
