"""``time_callable``: wall-clock milliseconds per call, with warm-up and GPU synchronisation."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class TimingResult:
    """Milliseconds per call of the timed (not the warm-up) calls.

    Attributes:
        median_ms: median over ``samples_ms``.
        min_ms: fastest call.
        max_ms: slowest call.
        samples_ms: [repeats] every timed call, in order.
    """

    median_ms: float
    min_ms: float
    max_ms: float
    samples_ms: tuple[float, ...]

    @classmethod
    def from_samples(cls, samples_ms: tuple[float, ...]) -> TimingResult:
        """Summarise a non-empty tuple of per-call milliseconds."""
        if not samples_ms:
            raise ValueError("a TimingResult needs at least one sample")
        return cls(
            median_ms=float(statistics.median(samples_ms)),
            min_ms=float(min(samples_ms)),
            max_ms=float(max(samples_ms)),
            samples_ms=tuple(float(s) for s in samples_ms),
        )

    def summary(self) -> dict[str, float]:
        """``{"median": ms, "min": ms, "max": ms}``, the bench results file's form."""
        return {"median": self.median_ms, "min": self.min_ms, "max": self.max_ms}


def synchronizer(device: str | torch.device) -> Callable[[], None]:
    """A function that waits for all queued work on ``device`` (a no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def time_callable(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    repeats: int = 5,
    device: str | torch.device = "cpu",
    before: Callable[[], object] | None = None,
    on_timed_start: Callable[[], object] | None = None,
) -> TimingResult:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed calls.

    Each timed call is measured from just before ``fn()`` to just after a device
    synchronisation that follows it, so GPU kernels the call queued are counted in full
    (synchronising only before the call would leave the last call's kernels out).

    Args:
        fn: the work to time; its return value is discarded.
        warmup: untimed calls first (allocator, caches, lazy initialisation).
        repeats: timed calls (at least 1).
        device: where ``fn`` queues work; ``"cuda"`` devices are synchronised.
        before: called (untimed) before every call, warm-up included, e.g. to move atoms.
        on_timed_start: called once after the warm-up, before the first timed call, e.g. to
            reset peak-memory counters.

    Returns:
        A :class:`TimingResult` over the ``repeats`` timed calls.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup must be at least 0, got {warmup}")
    sync = synchronizer(device)
    for _ in range(warmup):
        if before is not None:
            before()
        fn()
    sync()
    if on_timed_start is not None:
        on_timed_start()
    samples = []
    for _ in range(repeats):
        if before is not None:
            before()
        sync()
        start = time.perf_counter_ns()
        fn()
        sync()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return TimingResult.from_samples(tuple(samples))
