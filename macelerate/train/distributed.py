"""Data-parallel training across processes (``torchrun``), CPU (gloo) or GPU (nccl).

Launch any training command under ``torchrun``; the loop reads the launcher's environment::

    torchrun --nproc_per_node 4 $(which macelerate) distill TEACHER --data DATA --out STUDENT

Each optimisation step splits its batch of ``batch_size`` structures across the ``world_size``
ranks (rank r takes structures r, r + world, ...), every rank computes the gradient of its own
mean loss, and the gradients are averaged with one all-reduce per parameter before the shared
optimiser step. With equal shares this is the gradient of the whole batch's mean loss, so a run on
W ranks follows the same trajectory as one process (up to reduction order). Rank 0 writes state
files and shows progress; every rank holds identical weights (broadcast from rank 0 at the start).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def share(self, chunk: Sequence[int]) -> list[int]:
        """This rank's structures of one batch."""
        return list(chunk[self.rank :: self.world_size])

    def average_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks (missing gradients count as 0)."""
        if not self.active:
            return
        for parameter in parameters:
            if parameter.grad is None:
                parameter.grad = torch.zeros_like(parameter)
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad /= self.world_size

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Make every rank start from rank 0's weights and buffers."""
        if not self.active:
            return
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def data_parallel_from_env(*, device: str, batch_size: int) -> DataParallel:
    """A :class:`DataParallel` from ``torchrun``'s environment (initialising the process group).

    Raises:
        ValueError: a batch smaller than the number of ranks (some rank would get no structure).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DataParallel()
    if batch_size < world_size:
        raise ValueError(
            f"batch_size {batch_size} is smaller than the {world_size} data-parallel ranks; "
            f"use --batch-size {world_size} or more"
        )
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size())


def local_device(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun; other devices are unchanged."""
    if device == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device
