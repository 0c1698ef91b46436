"""Molecular dynamics with ASE integrators and a progress bar that shows ns/day."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm


@dataclass(frozen=True)
class MDConfig:
    """Settings of a short MD run.

    Attributes:
        steps: number of integration steps.
        timestep_fs: time step in fs.
        temperature_k: initial (NVE) or bath (Langevin) temperature in K.
        ensemble: ``"nve"`` (velocity Verlet) or ``"langevin"``.
        friction_per_fs: Langevin friction in 1/fs.
        seed: random seed for initial velocities and Langevin noise.
        trajectory: optional ASE ``.traj`` path, one frame every ``write_every`` steps.
        write_every: trajectory stride in steps.
    """

    steps: int = 100
    timestep_fs: float = 1.0
    temperature_k: float = 300.0
    ensemble: Literal["nve", "langevin"] = "nve"
    friction_per_fs: float = 0.01
    seed: int = 0
    trajectory: str | None = None
    write_every: int = 10


@dataclass(frozen=True)
class MDResult:
    """Energies along the run (eV) and the measured speed."""

    total_energy: np.ndarray  # [n_steps + 1] eV
    potential_energy: np.ndarray  # [n_steps + 1] eV
    temperature: np.ndarray  # [n_steps + 1] K
    seconds: float
    steps_per_second: float
    ns_per_day: float


def ns_per_day(steps_per_second: float, timestep_fs: float) -> float:
    """Simulated nanoseconds per wall-clock day."""
    return steps_per_second * timestep_fs * 1e-6 * 86400.0


def thermalize(atoms: Atoms, *, temperature_k: float, seed: int) -> None:
    """Maxwell-Boltzmann momenta at ``temperature_k`` with zero total momentum (in place)."""
    rng = np.random.default_rng(seed)
    if hasattr(velocitydistribution, "thermalize_momenta"):  # ASE >= 3.29
        velocitydistribution.thermalize_momenta(atoms, temperature_K=temperature_k, rng=rng)
    else:  # pragma: no cover - older ASE
        velocitydistribution.MaxwellBoltzmannDistribution(
            atoms, temperature_K=temperature_k, rng=rng
        )
    velocitydistribution.Stationary(atoms)


def _integrator(atoms: Atoms, config: MDConfig) -> MolecularDynamics:
    dt = config.timestep_fs * units.fs
    if config.ensemble == "nve":
        return VelocityVerlet(atoms, timestep=dt)
    if config.ensemble == "langevin":
        return Langevin(
            atoms, timestep=dt, temperature_K=config.temperature_k,
            friction=config.friction_per_fs / units.fs, fixcm=False,
            rng=np.random.default_rng(config.seed),
        )  # fmt: skip
    raise ValueError(f"ensemble must be 'nve' or 'langevin', got {config.ensemble!r}")


def run_md(atoms: Atoms, config: MDConfig, *, progress: bool = True) -> MDResult:
    """Run MD on ``atoms`` (which must carry a calculator); ``atoms`` is advanced in place.

    Initial velocities are Maxwell-Boltzmann at ``temperature_k`` with zero total momentum,
    unless ``atoms`` already has non-zero momenta.
    """
    if atoms.calc is None:
        raise ValueError("atoms has no calculator: set atoms.calc = macelerate.Calculator(model)")
    if not np.any(atoms.get_momenta()):
        thermalize(atoms, temperature_k=config.temperature_k, seed=config.seed)
    dynamics = _integrator(atoms, config)
    writer = None
    if config.trajectory:
        from ase.io.trajectory import Trajectory

        Path(config.trajectory).parent.mkdir(parents=True, exist_ok=True)
        writer = Trajectory(config.trajectory, "w", atoms)
        dynamics.attach(writer.write, interval=config.write_every)
    epot, etot, temp = [], [], []

    def record() -> None:
        e = atoms.get_potential_energy()
        epot.append(e)
        etot.append(e + atoms.get_kinetic_energy())
        temp.append(atoms.get_temperature())

    record()
    bar = tqdm(total=config.steps, disable=not progress, unit="step", desc=f"MD {config.ensemble}")
    start = time.perf_counter()
    for done in range(config.steps):
        dynamics.run(1)
        record()
        elapsed = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(ns_day=f"{ns_per_day((done + 1) / elapsed, config.timestep_fs):.3f}",
                        T=f"{temp[-1]:.0f}K")  # fmt: skip
    seconds = time.perf_counter() - start
    bar.close()
    if writer is not None:
        writer.close()
    rate = config.steps / seconds if seconds > 0 else float("inf")
    return MDResult(
        np.array(etot), np.array(epot), np.array(temp), seconds, rate,
        ns_per_day(rate, config.timestep_fs),
    )  # fmt: skip
