"""Structures for ``compress``: teacher Langevin MD, rattled and strained copies, split by segment.

Every (start structure, temperature) pair is one teacher trajectory, written to its own file as
it runs (:func:`macelerate.md.run_md` keeps a ``.partial`` file until the run completes), so a
killed ``compress`` redoes at most one trajectory. Each trajectory's snapshots are cut into
consecutive train / validation / test segments with ``gap`` snapshots dropped after each cut, so
no held-out snapshot has a near-duplicate (its MD neighbour) in training. Rattled and strained
copies of the start structures only ever join the training split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms

from macelerate.md import MDConfig, run_md, suggested_timestep_fs
from macelerate.models.potential import Potential
from macelerate.pipeline.config import SamplingConfig

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Splits:
    """Unlabelled structures of each split (copies; the start structures are untouched)."""

    train: list[Atoms]
    val: list[Atoms]
    test: list[Atoms]

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def trajectory_path(folder: Path, start_index: int, temperature: float) -> Path:
    return folder / f"start{start_index}_{temperature:g}K.traj"


def teacher_trajectory(
    teacher: Potential,
    start: Atoms,
    *,
    temperature: float,
    config: SamplingConfig,
    path: Path,
    seed: int,
    progress: bool,
) -> list[Atoms]:
    """Snapshots (every ``interval`` steps, the start excluded) of a teacher Langevin run.

    An existing complete trajectory file is read instead of run again.

    Raises:
        MDInstabilityError: the teacher's MD blew up at this temperature (the partial
            trajectory is kept for inspection); lower the temperature or the time step.
    """
    from macelerate.calculator import Calculator

    if not path.is_file():
        atoms = start.copy()
        atoms.calc = Calculator(teacher)
        timestep = config.timestep_fs or suggested_timestep_fs(atoms)
        md = MDConfig(
            steps=config.md_steps, timestep_fs=timestep, temperature_k=temperature,
            ensemble="langevin", friction_per_fs=config.friction_per_fs, seed=seed,
            trajectory=str(path), write_every=config.interval,
        )  # fmt: skip
        run_md(atoms, md, progress=progress)
    frames = ase.io.read(str(path), index=":")
    frames = frames if isinstance(frames, list) else [frames]
    snapshots = []
    for frame in frames[1:]:  # frame 0 is the start structure itself
        snapshot = frame.copy()
        snapshot.calc = None
        snapshot.set_momenta(None)
        snapshot.info.update(source="teacher MD", md_temperature=float(temperature))
        snapshots.append(snapshot)
    return snapshots


def segment(snapshots: Sequence[Atoms], fractions: Sequence[float], gap: int) -> list[list[Atoms]]:
    """Consecutive train / validation / test segments of one trajectory, ``gap`` dropped after
    each cut. Every segment keeps at least one snapshot when the trajectory allows it."""
    n = len(snapshots)
    cuts = np.cumsum([0.0, *fractions]) * n
    bounds = [int(round(c)) for c in cuts]
    parts = []
    for k in range(3):
        begin = bounds[k] + (gap if k > 0 else 0)
        parts.append(list(snapshots[begin : bounds[k + 1]]))
    return parts


def perturbed_copies(start: Atoms, config: SamplingConfig, rng: np.random.Generator) -> list[Atoms]:
    """``n_rattled`` rattled copies and, for periodic cells, ``n_strained`` strained ones."""
    copies = []
    for _ in range(config.n_rattled):
        rattled = start.copy()
        rattled.calc = None
        rattled.positions = rattled.positions + rng.normal(0.0, config.rattle_std, (len(start), 3))
        rattled.info.update(source="rattled", rattle_std=float(config.rattle_std))
        copies.append(rattled)
    if start.pbc.all():
        for _ in range(config.n_strained):
            strain = rng.uniform(-config.max_strain, config.max_strain, (3, 3))
            strain = 0.5 * (strain + strain.T)
            strained = start.copy()
            strained.calc = None
            strained.set_cell(start.cell.array @ (np.eye(3) + strain), scale_atoms=True)
            strained.positions = strained.positions + rng.normal(0.0, 0.5 * config.rattle_std,
                                                                 (len(start), 3))  # fmt: skip
            strained.info.update(source="strained", max_strain=float(config.max_strain))
            copies.append(strained)
    return copies


def sample_splits(
    teacher: Potential,
    starts: Sequence[Atoms],
    *,
    config: SamplingConfig,
    folder: Path,
    seed: int = 0,
    progress: bool = True,
) -> Splits:
    """Teacher MD around ``starts`` split by trajectory segment, plus training-only copies."""
    folder.mkdir(parents=True, exist_ok=True)
    train: list[Atoms] = []
    val: list[Atoms] = []
    test: list[Atoms] = []
    rng = np.random.default_rng(seed)
    for s, start in enumerate(starts):
        for t, temperature in enumerate(config.temperatures):
            snapshots = teacher_trajectory(
                teacher, start, temperature=float(temperature), config=config,
                path=trajectory_path(folder, s, float(temperature)),
                seed=seed + 1000 * s + t, progress=progress,
            )  # fmt: skip
            parts = segment(snapshots, config.fractions, config.gap)
            for split, part in zip((train, val, test), parts):
                split += part
        train += perturbed_copies(start, config, rng)
    return Splits(train=train, val=val, test=test)
