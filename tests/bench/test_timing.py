"""time_callable, PeakMemoryTracker and out-of-memory recognition, on fake work."""

from __future__ import annotations

import mmap
import time

import pytest
import torch

from macelerate.bench.memory import (
    CPU_PEAK_RSS,
    PeakMemoryTracker,
    is_out_of_memory,
    physical_memory_gb,
)
from macelerate.bench.timing import TimingResult, time_callable


def test_warmup_calls_are_not_recorded():
    calls = []
    events = []

    def work() -> None:
        calls.append(len(calls))
        time.sleep(0.1 if len(calls) <= 2 else 0.005)  # the two warm-up calls are slow

    def before() -> None:
        events.append("before")
        time.sleep(0.05)  # untimed set-up: must not show in the samples

    result = time_callable(
        work, warmup=2, repeats=3, before=before, on_timed_start=lambda: events.append(len(calls))
    )
    assert len(calls) == 5 and len(result.samples_ms) == 3
    assert events.count("before") == 5
    assert events[2] == 2  # on_timed_start ran once, after exactly the two warm-up calls
    assert all(4.5 < s < 45 for s in result.samples_ms), result.samples_ms
    assert result.min_ms <= result.median_ms <= result.max_ms


def test_timing_summary_and_arguments():
    result = TimingResult.from_samples((3.0, 1.0, 2.0, 10.0))
    assert (result.median_ms, result.min_ms, result.max_ms) == (2.5, 1.0, 10.0)
    assert result.summary() == {"median": 2.5, "min": 1.0, "max": 10.0}
    with pytest.raises(ValueError, match="repeats"):
        time_callable(lambda: None, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        time_callable(lambda: None, warmup=-1)
    with pytest.raises(ValueError):
        TimingResult.from_samples(())


def test_cpu_peak_memory_sees_a_temporary_allocation():
    tracker = PeakMemoryTracker("cpu")
    with pytest.raises(RuntimeError, match="before reset"):
        tracker.read()
    tracker.reset()
    baseline = tracker.read().peak_mb
    # 150 MiB of fresh pages, touched, then freed. mmap, not numpy: once a model is loaded in
    # this process (macelerate's malloc setting), numpy could reuse freed heap pages that are
    # still resident, and the peak would not move.
    block = mmap.mmap(-1, 150 * 2**20)
    for offset in range(0, len(block), mmap.PAGESIZE):
        block[offset] = 1
    block.close()
    reading = tracker.read()
    assert reading.peak_mb >= baseline + 140
    if reading.kind == CPU_PEAK_RSS:  # the peak was reset: a new reset forgets the block
        tracker.reset()
        assert tracker.read().peak_mb < reading.peak_mb - 100


def test_out_of_memory_recognition():
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: 10 bytes"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert is_out_of_memory(RuntimeError("std::bad_alloc"))
    assert is_out_of_memory("libfoo.so: failed to map segment from shared object")
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory budget"))  # only runtime/OS errors
    assert physical_memory_gb() is None or physical_memory_gb() > 0.1
