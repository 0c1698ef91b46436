"""The allocator setting: applied once, and given up for steps with very large edge tensors."""

from __future__ import annotations

import macelerate.runtime.allocator as allocator
from macelerate.models.loading import load


class _FakeLibc:
    def __init__(self):
        self.calls: list[tuple] = []

    def mallopt(self, option, value):
        self.calls.append(("mallopt", option, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


def test_heap_mode_switches_with_step_size(monkeypatch):
    fake = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    monkeypatch.setattr(allocator, "_STATE", allocator.AllocatorTuning(True))
    monkeypatch.setattr(allocator, "_HEAP_MODE", True)
    assert allocator.heap_mode_for(10 * 2**20) is True
    assert fake.calls == []  # already in heap mode: nothing to change
    assert allocator.heap_mode_for(allocator.heap_mode_limit_bytes() + 1) is False
    assert fake.calls == [
        ("mallopt", allocator.M_MMAP_MAX, allocator.GLIBC_DEFAULT_MMAP_MAX),
        ("malloc_trim", 0),
    ]
    assert allocator.heap_mode_for(2**20) is True
    assert fake.calls[-1] == ("mallopt", allocator.M_MMAP_MAX, 0)


def test_nothing_changes_without_the_setting(monkeypatch):
    fake = _FakeLibc()
    monkeypatch.setattr(allocator, "_libc", lambda: fake)
    monkeypatch.setattr(allocator, "_STATE", allocator.AllocatorTuning(False, "refused"))
    assert allocator.heap_mode_for(1) is False and fake.calls == []


def test_potential_reports_its_edge_width(tiny_model):
    # tiny model: 8 channels, hidden L<=1, spherical harmonics to L=2 -> widest conv output
    width = load(tiny_model).edge_width
    assert width == max(block.conv_tp.irreps_out.dim for block in tiny_model.interactions)
    assert width > 0
