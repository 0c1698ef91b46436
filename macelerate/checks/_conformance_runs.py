"""The runs behind :func:`~macelerate.checks.conformance.check_potential` and what they read.

Each run evaluates a model one way (``Potential.predict`` alone and batched, the ASE Calculator,
``Potential.forward`` on a graph) on copies of the structures and records in a
:class:`Findings` every input it changed (compared exactly with a snapshot taken before), every
output of a wrong shape or dtype, and the number of NaN/inf values it read.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms

from macelerate._dtypes import dtype_name
from macelerate.calculator import Calculator
from macelerate.checks._batching import StructureOutput
from macelerate.models.potential import Potential, Prediction


@dataclass
class Findings:
    """What the runs found besides numbers to compare (filled while the runs go).

    Attributes:
        changed: every input field a run changed, named by the run.
        errors: every output that is missing or has a wrong shape or dtype.
        non_finite: NaN/inf values over every output read.
    """

    changed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    non_finite: int = 0

    def read(self, label: str, values: dict[str, Any], shapes: dict[str, tuple]) -> set[str]:
        """Count non-finite values; record each of ``shapes`` missing or misshapen.

        Returns the names whose shape is right.
        """
        for value in values.values():
            if value is not None:
                array = np.asarray(value, dtype=np.float64)
                self.non_finite += int(array.size - np.isfinite(array).sum())
        right = set()
        for name, shape in shapes.items():
            value = values.get(name)
            if value is not None and np.shape(value) == shape:
                right.add(name)
                continue
            got = "missing" if value is None else f"of shape {list(np.shape(value))}"
            self.errors.append(f"{label}: {name} {got}, expected {list(shape)}")
        return right


def predict_runs(
    potential: Potential, structures: list[Atoms], states: list[dict], found: Findings
) -> tuple[list[StructureOutput], list[StructureOutput]]:
    """Each structure alone, then all in one batch, through ``Potential.predict``."""
    sizes = [len(atoms) for atoms in structures]
    periodic = [i for i, atoms in enumerate(structures) if atoms.pbc.all()]
    work = [atoms.copy() for atoms in structures]
    singles = []
    for i, atoms in enumerate(work):
        prediction = potential.predict(atoms)
        label = f"Potential.predict(structure {i})"
        singles += _per_structure(prediction, [sizes[i]], i in periodic, label, found)
    all_periodic = len(periodic) == len(work)
    prediction = potential.predict(work, compute_stress=all_periodic, max_batch_atoms=sum(sizes))
    batched = _per_structure(prediction, sizes, all_periodic, "Potential.predict(batch)", found)
    if not all_periodic and len(periodic) > 1:  # the periodic ones again, with stress
        chosen = [work[i] for i in periodic]
        prediction = potential.predict(chosen, compute_stress=True, max_batch_atoms=sum(sizes))
        label = "Potential.predict(periodic batch)"
        outputs = _per_structure(prediction, [sizes[i] for i in periodic], True, label, found)
        for i, out in zip(periodic, outputs):
            batched[i] = StructureOutput(batched[i].energy, batched[i].forces, out.stress)
    for i, atoms in enumerate(work):
        found.changed += _changed(
            states[i], atoms_state(atoms), f"Potential.predict, structure {i}"
        )
    return singles, batched


def _per_structure(
    prediction: Prediction, sizes: list[int], stress: bool, label: str, found: Findings
) -> list[StructureOutput]:
    """Per-structure outputs (NaN where a shape is wrong), recording shape errors."""
    n, total = len(sizes), sum(sizes)
    ptr = np.concatenate([[0], np.cumsum(sizes)])
    shapes = {"energy": (n,), "forces": (total, 3), **({"stress": (n, 3, 3)} if stress else {})}
    values = {"energy": prediction.energy, "forces": prediction.forces, "stress": prediction.stress}
    right = found.read(label, values, shapes)
    if not np.array_equal(prediction.ptr, ptr):
        found.errors.append(f"{label}: ptr {prediction.ptr.tolist()}, expected {ptr.tolist()}")
    energy = prediction.energy if "energy" in right else np.full(n, np.nan)
    forces = prediction.forces if "forces" in right else np.full((total, 3), np.nan)
    stresses = prediction.stress if "stress" in right else None
    return [
        StructureOutput(float(energy[i]), forces[ptr[i] : ptr[i + 1]],
                        None if stresses is None else stresses[i])
        for i in range(n)
    ]  # fmt: skip


def calculator_run(
    calculator: Calculator, structures: list[Atoms], states: list[dict], found: Findings
) -> list[StructureOutput]:
    """Energy, forces and Voigt stress of each structure through the ASE interface."""
    outputs = []
    for i, original in enumerate(structures):
        atoms, periodic = original.copy(), bool(original.pbc.all())
        atoms.calc = calculator
        stress = atoms.get_stress() if periodic else None  # first: one call fills E and F too
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        found.changed += _changed(states[i], atoms_state(atoms), f"Calculator, structure {i}")
        shapes = {"energy": (), "forces": (len(atoms), 3), **({"stress": (6,)} if periodic else {})}
        values = {"energy": energy, "forces": forces, "stress": stress}
        found.read(f"Calculator (structure {i})", values, shapes)
        scalar = float(np.asarray(energy).ravel()[0]) if np.size(energy) else math.nan
        outputs.append(StructureOutput(scalar, np.asarray(forces), stress))
    return outputs


def forward_run(potential: Potential, structures: list[Atoms], found: Findings) -> None:
    """One ``Potential.forward`` of all structures: inputs unchanged, output shapes and dtypes."""
    graph = potential.build_graph(structures)
    before = {key: (value.detach().clone(), value.requires_grad) for key, value in graph.items()}
    stress = all(bool(atoms.pbc.all()) for atoms in structures)
    out = potential.forward(graph, compute_stress=stress)
    for key, (value, requires_grad) in before.items():
        now = graph.get(key)
        same = (
            isinstance(now, torch.Tensor) and now.shape == value.shape
            and now.dtype == value.dtype and now.requires_grad == requires_grad
            and bool(torch.equal(now.detach(), value))
        )  # fmt: skip
        if not same:
            found.changed.append(f"Potential.forward: graph[{key!r}]")
    found.changed += [
        f"Potential.forward: graph[{key!r}] added" for key in set(graph) - set(before)
    ]
    n, total = len(structures), sum(len(atoms) for atoms in structures)
    shapes = {"energy": (n,), "node_energy": (total,), "forces": (total, 3)}
    if stress:
        shapes["stress"] = (n, 3, 3)
    values = {name: out[name].detach().double().cpu().numpy() for name in shapes if name in out}
    for name in found.read("Potential.forward", values, shapes):
        value = out[name]
        wanted = (torch.float32, torch.float64) if "energy" in name else (potential.dtype,)
        if value.dtype not in wanted:
            names = " or ".join(dtype_name(dtype) for dtype in wanted)
            found.errors.append(
                f"Potential.forward: {name} is {dtype_name(value.dtype)}, expected {names}"
            )


def atoms_state(atoms: Atoms) -> dict[str, Any]:
    """Copies of everything a model could change in ``atoms``."""
    return {
        "positions": atoms.positions.copy(),
        "cell": atoms.cell.array.copy(),
        "numbers": atoms.numbers.copy(),
        "pbc": atoms.pbc.copy(),
        "info": copy.deepcopy(atoms.info),
        "arrays": {key: value.copy() for key, value in atoms.arrays.items()
                   if key not in ("positions", "numbers")},
    }  # fmt: skip


def _changed(before: dict[str, Any], after: dict[str, Any], label: str) -> list[str]:
    return [f"{label}: {key}" for key in before if not _same(before[key], after[key])]


def _same(a: Any, b: Any) -> bool:
    """Exact equality of nested dicts, sequences and arrays (NaN equals NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
            and all(_same(a[key], b[key]) for key in a)
        )  # fmt: skip
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        try:
            return bool(np.array_equal(a, b, equal_nan=True))
        except TypeError:  # non-numeric arrays
            return bool(np.array_equal(a, b))
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b) or (a != a and b != b)  # NaN scalars
    except (TypeError, ValueError):
        return False
