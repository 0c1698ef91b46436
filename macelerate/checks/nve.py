"""Energy conservation of a short NVE (velocity Verlet) run.

The drift is the least-squares slope of the total energy over time (``numpy.polyfit``), in
meV/atom/ps, which is robust to the oscillation of E_total that any finite time step gives; the
fluctuation is the RMS deviation of E_total from its mean, in meV/atom. A smooth, conservative
model with a small enough time step gives a drift near zero; discontinuities (hard neighbour caps,
non-conservative forces) show up as a systematic slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from macelerate.calculator import Calculator
from macelerate.checks.thresholds import Tolerances, Verdict, judge
from macelerate.errors import MDInstabilityError
from macelerate.md import MDConfig, MDResult, run_md
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class NVEResult:
    """Energy conservation along a short NVE run.

    Attributes:
        steps: integration steps.
        timestep_fs: time step in fs.
        initial_temperature_k: temperature of the initial Maxwell-Boltzmann velocities, K.
        n_atoms: atoms in the structure.
        drift_mev_per_atom_ps: fitted slope of E_total, meV/atom/ps.
        fluctuation_mev_per_atom: RMS deviation of E_total from its mean, meV/atom.
        final_temperature_k: temperature after the last step, K.
        steps_per_second: integration speed (model calls included, first step left out).
        problem: why the run was stopped early (it blew up, or NaN), else None; the drift,
            fluctuation and speed are then NaN.
        residual_mev_per_atom: RMS deviation of E_total from the fitted line, meV/atom (the
            oscillation a finite time step gives; it limits how well a short run fixes a slope).

    A run of duration T cannot tell a drift below ``(3 * residual + 0.01 meV/atom) / T`` from the
    integrator's bounded oscillation (whose phase alone tilts a fit over a few steps), so the
    pass limit is the tier's drift limit plus that resolution.
    """

    steps: int
    timestep_fs: float
    initial_temperature_k: float
    n_atoms: int
    drift_mev_per_atom_ps: float
    fluctuation_mev_per_atom: float
    final_temperature_k: float
    steps_per_second: float
    problem: str | None = None
    residual_mev_per_atom: float = 0.0

    @property
    def resolution_mev_per_atom_ps(self) -> float:
        """The smallest drift (meV/atom/ps) this run can resolve (see the class docstring)."""
        duration_ps = self.steps * self.timestep_fs * 1e-3
        return (3.0 * self.residual_mev_per_atom + ENERGY_RESOLUTION) / duration_ps

    def verdicts(self, tolerances: Tolerances) -> list[Verdict]:
        """The fitted drift against ``tolerances.nve_drift`` plus the run's resolution."""
        hint = self.problem or (
            "the total energy is not conserved: forces that are not the energy's gradient "
            "(direct-force head), a discontinuous energy (hard neighbour cap), or a time step "
            "too large for the system (--nve-timestep)"
        )
        limit = tolerances.nve_drift + self.resolution_mev_per_atom_ps
        return [judge("nve", "drift", self.drift_mev_per_atom_ps, limit, "meV/atom/ps", hint=hint)]


ENERGY_RESOLUTION = 0.01
"""meV/atom: total-energy changes below this over a whole run are not read as drift."""


def _residual(times_ps: np.ndarray, total_energy: np.ndarray, *, n_atoms: int) -> float:
    """RMS deviation (meV/atom) of the total energy (eV) from its least-squares line."""
    energy = 1e3 * np.asarray(total_energy) / n_atoms
    line = np.polyval(np.polyfit(times_ps, energy, 1), times_ps)
    return float(np.sqrt(np.mean((energy - line) ** 2)))


def fit_drift(times_ps: np.ndarray, total_energy: np.ndarray, *, n_atoms: int) -> float:
    """Least-squares slope of the total energy, meV/atom/ps.

    Args:
        times_ps: [n_points] times in ps.
        total_energy: [n_points] total energies in eV.
        n_atoms: atoms the energy is divided by.
    """
    slope, _ = np.polyfit(np.asarray(times_ps), np.asarray(total_energy), 1)  # eV/ps
    return float(1e3 * slope / n_atoms)


def energy_fluctuation(total_energy: np.ndarray, *, n_atoms: int) -> float:
    """RMS deviation of the total energy (eV) from its mean, meV/atom."""
    energy = np.asarray(total_energy)
    return float(1e3 * np.sqrt(np.mean((energy - energy.mean()) ** 2)) / n_atoms)


def check_nve(
    potential: Potential,
    atoms: Atoms,
    *,
    steps: int = 50,
    timestep_fs: float = 0.5,
    temperature_k: float = 300.0,
    seed: int = 0,
) -> NVEResult:
    """Run NVE from ``atoms`` (copied; its velocities are ignored) and measure the drift.

    Args:
        potential: the model.
        atoms: starting structure (never modified).
        steps: integration steps (>= 2).
        timestep_fs: time step in fs.
        temperature_k: initial Maxwell-Boltzmann temperature in K (zero total momentum).
        seed: seed of the initial velocities.

    Returns:
        An :class:`NVEResult`; a run that blows up (:class:`~macelerate.errors.MDInstabilityError`)
        gives NaN numbers and the reason in ``problem``.
    """
    if steps < 2:
        raise ValueError(f"an NVE drift needs at least 2 steps, got {steps}")
    start = atoms.copy()
    start.set_momenta(np.zeros((len(atoms), 3)))  # run_md then draws them from ``seed``
    start.calc = Calculator(potential)
    config = MDConfig(
        steps=steps, timestep_fs=timestep_fs, temperature_k=temperature_k, ensemble="nve",
        seed=seed,
    )  # fmt: skip
    try:
        result = run_md(start, config, progress=False)
    except MDInstabilityError as error:
        partial = error.result
        final = float(partial.temperature[-1]) if isinstance(partial, MDResult) else math.nan
        return NVEResult(
            steps=steps, timestep_fs=timestep_fs, initial_temperature_k=temperature_k,
            n_atoms=len(atoms), drift_mev_per_atom_ps=math.nan, fluctuation_mev_per_atom=math.nan,
            final_temperature_k=final, steps_per_second=math.nan, problem=str(error),
        )  # fmt: skip
    times_ps = np.arange(steps + 1) * timestep_fs * 1e-3
    return NVEResult(
        steps=steps,
        timestep_fs=timestep_fs,
        initial_temperature_k=temperature_k,
        n_atoms=len(atoms),
        drift_mev_per_atom_ps=fit_drift(times_ps, result.total_energy, n_atoms=len(atoms)),
        fluctuation_mev_per_atom=energy_fluctuation(result.total_energy, n_atoms=len(atoms)),
        final_temperature_k=float(result.temperature[-1]),
        steps_per_second=result.steps_per_second,
        residual_mev_per_atom=_residual(times_ps, result.total_energy, n_atoms=len(atoms)),
    )
