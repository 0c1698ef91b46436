"""Data-parallel training: two gloo ranks follow the single-process trajectory."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ase.build import molecule

from macelerate.testing import tiny_mace
from macelerate.train.config import TrainConfig
from macelerate.train.distributed import DataParallel, data_parallel_from_env
from macelerate.train.loop import train


def _structures() -> list:
    teacher = tiny_mace([1, 6, 8], seed=5)
    from macelerate import load

    potential, rng, frames = load(teacher), np.random.default_rng(0), []
    for _ in range(4):  # equal sizes: the mean over ranks equals the mean over the batch
        atoms = molecule("CH3CH2OH")
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        prediction = potential.predict(atoms, compute_stress=False)
        atoms.info["energy"] = float(prediction.energy[0])
        atoms.arrays["forces"] = prediction.forces
        frames.append(atoms)
    return frames


def _config(**extra) -> TrainConfig:
    return TrainConfig(epochs=1, batch_size=2, lr=1e-2, ema_decay=None, val_fraction=0.0,
                       progress=False, seed=1, grad_clip=None, **extra)  # fmt: skip


def _rank_main(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    trained, _ = train(tiny_mace([1, 6, 8], seed=0), _structures(), config=_config())
    torch.save(trained.state_dict(), f"{out}.{rank}")
    torch.distributed.destroy_process_group()


def test_shares_split_batches_and_reject_small_batches(monkeypatch):
    assert DataParallel(rank=1, world_size=2).share([7, 8, 9]) == [8]
    assert DataParallel().share([7, 8]) == [7, 8] and not DataParallel().active
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ValueError, match="batch_size 2 is smaller than the 4"):
        data_parallel_from_env(device="cpu", batch_size=2)


def test_two_ranks_match_one_process(tmp_path):
    single, _ = train(tiny_mace([1, 6, 8], seed=0), _structures(), config=_config())
    out = str(tmp_path / "rank")
    port = 29500 + os.getpid() % 1000
    mp.spawn(_rank_main, args=(2, port, out), nprocs=2, join=True)
    states = [torch.load(f"{out}.{rank}", weights_only=True) for rank in range(2)]
    for key, value in single.state_dict().items():
        if value.is_floating_point():
            torch.testing.assert_close(states[0][key], states[1][key], rtol=0, atol=0)
            torch.testing.assert_close(states[0][key], value, rtol=1e-9, atol=1e-10)
