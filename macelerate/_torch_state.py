"""The one restoring context manager through which macelerate touches torch's global state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Set ``torch``'s default dtype inside the block and restore the previous one on exit.

    mace-torch constructors read the default dtype for buffers such as ``r_max`` and the U
    matrices, so building a model in a given precision needs this (building in the default dtype
    and casting afterwards gives different constants, e.g. U matrices off by 1e-8). The default
    dtype is process-wide, so the block holds :func:`macelerate._mace.model_construction`
    exclusively: no macelerate inference (which holds it shared) runs while it is changed.
    """
    from macelerate._mace import model_construction

    with model_construction():
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


@contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """Set ``torch.set_float32_matmul_precision`` inside the block and restore it on exit.

    ``"high"`` lets float32 matmuls use TF32 tensor cores on NVIDIA GPUs (Ampere and later).
    Nothing outside the block sees the change.
    """
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@contextmanager
def num_threads(threads: int | None) -> Iterator[int]:
    """Run the block with ``threads`` torch CPU threads (``None``: unchanged), restoring the
    previous count on exit; yields the count in use."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def _denormals_flushed() -> bool:
    """Whether this thread's CPU flushes subnormal floats to zero (FTZ/DAZ)."""
    import numpy as np

    return float(np.float64(5e-324) * np.float64(1.0)) == 0.0


@contextmanager
def keep_subnormals() -> Iterator[None]:
    """Undo, on exit, a switch to flushing subnormal floats made by code run inside the block.

    Some C++ engines (Symmetrix-XL) set the CPU's flush-to-zero / denormals-are-zero flags when
    they compute, which silently changes float arithmetic for the rest of the caller's process.
    If they were off on entry and are on at exit, ``torch.set_flush_denormal(False)`` clears
    them; a process that had them on keeps them.
    """
    before = _denormals_flushed()
    try:
        yield
    finally:
        if not before and _denormals_flushed():
            torch.set_flush_denormal(False)
