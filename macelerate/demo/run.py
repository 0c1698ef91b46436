"""``macelerate demo``: the embedded model in MD, macelerate against mace-torch's calculator."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.calculator import Calculator as AseCalculator
from ase.md.verlet import VelocityVerlet

from macelerate.data.structures import graphene_oxide
from macelerate.md import thermalize

DEMO_MODEL = "go_small.pt"
COMPRESSED_MODELS = (
    ("pruned to 8 channels", "go_small_pruned.pt"),
    ("distilled student", "go_small_student.pt"),
)
"""Embedded models derived from the demo model (``macelerate/demo/TRAINING.md``): run beside it."""
WARMUP_CALLS = 3


def demo_model_path(name: str = DEMO_MODEL) -> Path:
    """Path of an embedded demo checkpoint (see ``macelerate/demo/README.md``)."""
    return Path(str(resources.files("macelerate.demo").joinpath(name)))


@dataclass(frozen=True)
class EngineRun:
    """One engine's MD run: wall time per step and the forces it produced at every step."""

    name: str
    seconds_per_step: float
    forces: list[np.ndarray]  # per step, [n_atoms, 3] eV/Å
    total_energy: list[float]  # per step, eV


def run_engine(
    name: str, atoms: Atoms, calculator: AseCalculator, *, steps: int, timestep_fs: float
) -> EngineRun:
    """NVE MD from a copy of ``atoms`` (velocities included) after untimed warm-up force calls."""
    atoms = atoms.copy()
    atoms.calc = calculator
    for _ in range(WARMUP_CALLS):  # e3nn's TorchScript code is slow for its first few calls
        calculator.reset()
        atoms.get_forces()
    dynamics = VelocityVerlet(atoms, timestep=timestep_fs * units.fs)
    forces, energies = [], []

    def record() -> None:
        forces.append(atoms.get_forces().copy())
        energies.append(atoms.get_potential_energy() + atoms.get_kinetic_energy())

    dynamics.attach(record, interval=1)
    start = time.perf_counter()
    dynamics.run(steps)
    elapsed = time.perf_counter() - start
    return EngineRun(name, elapsed / steps, forces, energies)


def _mace_calculator(potential, dtype: str) -> AseCalculator:
    from mace.calculators import MACECalculator

    from macelerate._mace import quiet_model_construction

    with quiet_model_construction():  # MACECalculator converts the module it gets: give a copy
        module = copy.deepcopy(potential.model)
    return MACECalculator(models=module, device="cpu", default_dtype=dtype)


def run_demo(
    *, steps: int = 20, dtype: str = "float64", repeat: tuple[int, int] = (7, 5),
    model_path: str | Path | None = None, print_fn: Callable[[str], None] = print,
    precision: str | None = None,
) -> dict[str, EngineRun]:  # fmt: skip
    """Run the demo and print its table; returns both engines' runs.

    Args:
        steps: NVE steps per engine (1 fs each, from 300 K).
        dtype: ``"float64"`` or ``"float32"`` for both engines.
        repeat: graphene cell repetitions; the default gives 168 atoms (C140O28).
        model_path: a model for H/C/O other than the embedded one.
        print_fn: where the table goes.
        precision: a precision preset (``"bf16-linear"``...) for an extra macelerate row.

    mace-torch's calculator runs first, before macelerate tunes the process's allocator, so each
    engine is timed as a user would get it.
    """
    from macelerate.calculator import Calculator
    from macelerate.models.loading import load

    atoms = graphene_oxide(repeat=repeat)
    thermalize(atoms, temperature_k=300.0, seed=0)
    model_path = model_path or demo_model_path()
    reference_potential = load(model_path, dtype=dtype, tune_allocator=False)
    name = "embedded " + DEMO_MODEL if model_path == demo_model_path() else str(model_path)
    print_fn(
        f"demo: {len(atoms)}-atom graphene oxide ({atoms.get_chemical_formula()}), model {name}, "
        f"{dtype}, {steps} NVE steps of 1 fs from 300 K "
        f"after {WARMUP_CALLS} untimed calls per engine"
    )
    runs = {}
    runs["mace-torch"] = run_engine(
        "mace-torch MACECalculator", atoms, _mace_calculator(reference_potential, dtype),
        steps=steps, timestep_fs=1.0,
    )  # fmt: skip
    fast = Calculator(model_path, dtype=dtype)
    runs["macelerate"] = run_engine(
        "macelerate Calculator", atoms, fast, steps=steps, timestep_fs=1.0
    )
    if precision is not None:
        runs[f"macelerate {precision}"] = run_engine(
            f"macelerate {precision}", atoms, Calculator(model_path, precision=precision),
            steps=steps, timestep_fs=1.0,
        )  # fmt: skip
    if model_path == demo_model_path():
        for label, file_name in COMPRESSED_MODELS:
            runs[label] = run_engine(
                f"macelerate {label}", atoms, Calculator(demo_model_path(file_name), dtype=dtype),
                steps=steps, timestep_fs=1.0,
            )  # fmt: skip
    others = [run for key, run in runs.items() if key != "mace-torch"]
    print_fn(format_table(runs["mace-torch"], others))
    return runs


def format_table(reference: EngineRun, others: list[EngineRun]) -> str:
    """A plain-text table: ms/step, steps/s, speed-up and force differences to the reference.

    ``RMS ΔF start`` compares forces on the same (starting) structure; ``max|ΔF| run`` compares
    each step of the two trajectories, which part when the forces differ.
    """
    lines = [
        f"{'engine':<38}{'ms/step':>9}{'steps/s':>9}{'speed-up':>9}"
        f"{'RMS ΔF start':>14}{'max|ΔF| run':>13}",
        f"{reference.name:<38}{1e3 * reference.seconds_per_step:>9.1f}"
        f"{1 / reference.seconds_per_step:>9.2f}{1.0:>9.2f}{'(reference)':>14}{'eV/Å':>13}",
    ]
    for run in others:
        d_force = max(float(np.abs(a - b).max()) for a, b in zip(run.forces, reference.forces))
        start = float(np.sqrt(np.mean((run.forces[0] - reference.forces[0]) ** 2)))
        lines.append(
            f"{run.name:<38}{1e3 * run.seconds_per_step:>9.1f}{1 / run.seconds_per_step:>9.2f}"
            f"{reference.seconds_per_step / run.seconds_per_step:>9.2f}{start:>14.1e}"
            f"{d_force:>13.1e}"
        )
    return "\n".join(lines)
