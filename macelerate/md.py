"""Molecular dynamics with ASE integrators, a progress bar that shows ns/day, and a stability watch.

Every step is watched (:class:`StabilityLimits`): a temperature far above the start, an NVE total
energy that wanders off, huge or NaN forces, or atoms pushed into each other stop the run with one
:class:`~macelerate.errors.MDInstabilityError` that names the step and the likely cause. A
trajectory is written under a temporary name (``md.partial.traj`` for ``md.traj``) and moved onto
its name only when the run completes, so a failed run never touches an existing file.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms, units
from ase.md import velocitydistribution
from ase.md.langevin import Langevin
from ase.md.md import MolecularDynamics
from ase.md.verlet import VelocityVerlet
from tqdm import tqdm

from macelerate.errors import MDInstabilityError, StructureError


@dataclass(frozen=True)
class StabilityLimits:
    """When an MD run counts as blown up (checked after every step).

    Attributes:
        temperature_factor: the run stops above ``max(factor * T0, T0 + temperature_margin_k)``,
            where ``T0`` is the larger of the set temperature and the starting temperature.
        temperature_margin_k: K, see ``temperature_factor`` (so a run from 0 K may heat up).
        energy_drift_ev_per_atom: NVE only: largest |E_total(t) - E_total(0)| per atom, eV
            (0.25 eV/atom is the kinetic energy of ~1900 K; a healthy run drifts by meV).
        max_force_ev_per_a: largest per-atom force norm, eV/Å (bonded forces stay below ~20).
    """

    temperature_factor: float = 10.0
    temperature_margin_k: float = 2000.0
    energy_drift_ev_per_atom: float = 0.25
    max_force_ev_per_a: float = 50.0

    def max_temperature(self, reference_k: float) -> float:
        """The temperature limit (K) of a run that started at / is held at ``reference_k``."""
        return max(self.temperature_factor * reference_k, reference_k + self.temperature_margin_k)


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
        trajectory: optional ASE ``.traj`` path, one frame every ``write_every`` steps; written
            as ``<stem>.partial<suffix>`` and renamed when the run completes.
        write_every: trajectory stride in steps.
        limits: when to stop a run that blows up; ``None`` turns the watch off (NaN energies,
            forces and overlapping atoms still stop it).
    """

    steps: int = 100
    timestep_fs: float = 1.0
    temperature_k: float = 300.0
    ensemble: Literal["nve", "langevin"] = "nve"
    friction_per_fs: float = 0.01
    seed: int = 0
    trajectory: str | None = None
    write_every: int = 10
    limits: StabilityLimits | None = field(default_factory=StabilityLimits)


@dataclass(frozen=True)
class MDResult:
    """Energies along the run (eV) and the measured speed.

    ``steps_per_second`` and ``ns_per_day`` leave out the first step (model warm-up, lazy
    initialisation), which is reported alone as ``first_step_seconds``; a one-step run has only
    that step to go by. ``seconds`` is the wall time of all steps.
    """

    total_energy: np.ndarray  # [n_steps + 1] eV
    potential_energy: np.ndarray  # [n_steps + 1] eV
    temperature: np.ndarray  # [n_steps + 1] K
    seconds: float
    steps_per_second: float
    ns_per_day: float
    first_step_seconds: float = 0.0


def ns_per_day(steps_per_second: float, timestep_fs: float) -> float:
    """Simulated nanoseconds per wall-clock day."""
    return steps_per_second * timestep_fs * 1e-6 * 86400.0


def partial_path(trajectory: str | Path) -> Path:
    """Where a run writes ``trajectory`` until it completes: ``md.traj`` -> ``md.partial.traj``."""
    path = Path(trajectory)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def suggested_timestep_fs(atoms: Atoms) -> float:
    """A safe NVE time step (fs) for the lightest element: 0.5 with H/He, 1 up to Ar, else 2."""
    lightest = float(atoms.get_masses().min())
    return 0.5 if lightest < 5.0 else 1.0 if lightest < 40.0 else 2.0


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


def _validate(atoms: Atoms, config: MDConfig) -> None:
    if atoms.calc is None:
        raise ValueError("atoms has no calculator: set atoms.calc = macelerate.Calculator(model)")
    if config.ensemble not in ("nve", "langevin"):
        raise ValueError(f"ensemble must be 'nve' or 'langevin', got {config.ensemble!r}")
    if config.steps < 1 or config.timestep_fs <= 0 or config.write_every < 1:
        raise ValueError(
            f"steps and write_every must be >= 1 and the time step positive, got steps="
            f"{config.steps}, write_every={config.write_every}, timestep {config.timestep_fs} fs"
        )
    if len(atoms) < 2:
        raise StructureError(
            f"MD needs at least 2 atoms, this structure has {len(atoms)}: a lone atom feels no "
            "force and, once its centre-of-mass motion is removed, has no temperature. For a "
            "one-atom periodic cell, repeat it first (atoms.repeat((3, 3, 3)))"
        )


@dataclass
class _Record:
    """Energies (eV) and temperatures (K) of every recorded step."""

    potential: list[float] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)

    def add(self, atoms: Atoms) -> float:
        """Record the current step; returns the largest per-atom force norm (eV/Å)."""
        energy = float(atoms.get_potential_energy())
        forces = atoms.get_forces()
        self.potential.append(energy)
        self.total.append(energy + float(atoms.get_kinetic_energy()))
        self.temperature.append(float(atoms.get_temperature()))
        norms = np.linalg.norm(forces, axis=1)
        return float(norms.max()) if np.isfinite(norms).all() else float("nan")

    def result(self, *, seconds: float, rate: float, first: float, timestep_fs: float) -> MDResult:
        return MDResult(
            total_energy=np.array(self.total), potential_energy=np.array(self.potential),
            temperature=np.array(self.temperature), seconds=seconds, steps_per_second=rate,
            ns_per_day=ns_per_day(rate, timestep_fs), first_step_seconds=first,
        )  # fmt: skip


def _problem(
    record: _Record, max_force: float, *, config: MDConfig, n_atoms: int, force_limit: float
) -> str | None:
    """What is wrong with the last recorded step, or None."""
    energy, temperature = record.total[-1], record.temperature[-1]
    if not (np.isfinite(energy) and np.isfinite(temperature) and np.isfinite(max_force)):
        return "the energy, forces or velocities became NaN or infinite"
    limits = config.limits
    if limits is None:
        return None
    reference = max(config.temperature_k, record.temperature[0])
    if temperature > limits.max_temperature(reference):
        return (
            f"the temperature reached {temperature:.4g} K (started at {record.temperature[0]:.4g}"
            f" K; limit {limits.max_temperature(reference):.4g} K)"
        )
    drift = abs(energy - record.total[0]) / n_atoms
    if config.ensemble == "nve" and drift > limits.energy_drift_ev_per_atom:
        return (
            f"the total energy moved by {drift:.3g} eV/atom (limit "
            f"{limits.energy_drift_ev_per_atom:g}); NVE should conserve it to meV"
        )
    if max_force > force_limit:
        return f"a force reached {max_force:.3g} eV/Å (limit {force_limit:.3g})"
    return None


def _cause(atoms: Atoms, config: MDConfig) -> str:
    safe = suggested_timestep_fs(atoms)
    if config.timestep_fs > safe:
        lightest = atoms.get_chemical_symbols()[int(np.argmin(atoms.get_masses()))]
        return (
            f"likely cause: the time step of {config.timestep_fs:g} fs is too large for this "
            f"system (its lightest atoms, {lightest}, need about {safe:g} fs); use a time step "
            f"of {safe:g} fs or less"
        )
    return (
        f"likely cause: the temperature ({config.temperature_k:g} K) is too high for this model, "
        "or the model is unstable for these structures; lower the temperature or the time step, "
        "and run `macelerate check` on the model"
    )


def _blow_up(
    what: str, *, step: int, atoms: Atoms, config: MDConfig, record: _Record, start: float
) -> MDInstabilityError:
    where = f"step {step} of {config.steps} (t = {step * config.timestep_fs:g} fs)"
    message = f"MD blew up at {where}: {what}; {_cause(atoms, config)}"
    if config.trajectory:
        message += (
            f". The frames written so far are in {partial_path(config.trajectory)}; "
            f"{config.trajectory} was left as it was"
        )
    elapsed = time.perf_counter() - start
    result = record.result(seconds=elapsed, rate=float("nan"), first=float("nan"),
                           timestep_fs=config.timestep_fs)  # fmt: skip
    return MDInstabilityError(message, step=step, result=result)


def run_md(atoms: Atoms, config: MDConfig, *, progress: bool = True) -> MDResult:
    """Run MD on ``atoms`` (which must carry a calculator); ``atoms`` is advanced in place.

    Initial velocities are Maxwell-Boltzmann at ``temperature_k`` with zero total momentum,
    unless ``atoms`` already has non-zero momenta.

    Raises:
        StructureError: fewer than 2 atoms, or a starting structure the model cannot evaluate.
        MDInstabilityError: the run blew up (see :class:`StabilityLimits`); the trajectory so far
            is kept under :func:`partial_path`, and an existing ``config.trajectory`` is untouched.
    """
    _validate(atoms, config)
    if not np.any(atoms.get_momenta()):
        thermalize(atoms, temperature_k=config.temperature_k, seed=config.seed)
    record = _Record()
    initial_force = record.add(atoms)  # the first model call: validates the structure
    if not (np.isfinite(record.total[0]) and np.isfinite(initial_force)):
        raise MDInstabilityError(
            "the model gives a NaN or infinite energy or forces for the starting structure: "
            "check the model (`macelerate check`) and the structure",
            step=0,
        )
    limits = config.limits or StabilityLimits()
    force_limit = max(limits.max_force_ev_per_a, 2.0 * initial_force)  # eV/Å
    dynamics = _integrator(atoms, config)
    writer = None
    if config.trajectory:
        from ase.io.trajectory import Trajectory

        partial_path(config.trajectory).parent.mkdir(parents=True, exist_ok=True)
        writer = Trajectory(str(partial_path(config.trajectory)), "w", atoms)
        dynamics.attach(writer.write, interval=config.write_every)
    bar = tqdm(total=config.steps, disable=not progress, unit="step", desc=f"MD {config.ensemble}")
    first = steady = 0.0
    start = time.perf_counter()
    try:
        for done in range(1, config.steps + 1):
            try:
                dynamics.run(1)
                max_force = record.add(atoms)
            except StructureError as error:  # the step moved atoms into each other (or to NaN)
                what = "the step moved atoms to where the model refuses them: " + str(error)
                what = what.split(": fix")[0].split(": check")[0]  # drop the advice for inputs
                raise _blow_up(what, step=done, atoms=atoms, config=config, record=record,
                               start=start) from error  # fmt: skip
            problem = _problem(record, max_force, config=config, n_atoms=len(atoms),
                               force_limit=force_limit)  # fmt: skip
            if problem is not None:
                raise _blow_up(problem, step=done, atoms=atoms, config=config, record=record,
                               start=start)  # fmt: skip
            now = time.perf_counter()
            if done == 1:
                first, steady = now - start, now
            bar.update(1)
            speed = "warming up"
            if done > 1:
                rate = (done - 1) / max(now - steady, 1e-9)
                speed = f"{ns_per_day(rate, config.timestep_fs):.3f}"
            bar.set_postfix(ns_day=speed, T=f"{record.temperature[-1]:.0f}K")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    end = time.perf_counter()
    if config.trajectory:
        os.replace(partial_path(config.trajectory), config.trajectory)
    rate = (config.steps - 1) / max(end - steady, 1e-9) if config.steps > 1 else 1.0 / first
    return record.result(seconds=end - start, rate=rate, first=first,
                         timestep_fs=config.timestep_fs)  # fmt: skip
