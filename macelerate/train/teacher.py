"""Teacher labelling: energy, forces, stress and Hessian rows from a teacher model, with provenance.

:func:`label_structures` returns copies of the structures whose ``atoms.calc`` is a
``SinglePointCalculator`` holding the teacher's ``energy``, ``forces`` and (for structures periodic
in all three directions) ``stress``, so ``LabelKeys()`` (plus ``stress="stress"``) reads them back,
also after an extended-XYZ round trip (:func:`write_structures`). ``atoms.info`` records where the
labels came from: ``teacher`` (path or ``"module"``), ``teacher_sha256``, ``teacher_dtype`` and
``macelerate_version``. :func:`sample_structures` makes structures to label: Langevin MD snapshots
at several temperatures driven by the teacher, plus rattled copies of the starting structures.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import torch
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.stress import full_3x3_to_voigt_6_stress
from tqdm import tqdm

from macelerate._dtypes import dtype_name
from macelerate._version import __version__
from macelerate.atomic_io import write_atomically
from macelerate.models.potential import Potential
from macelerate.train.data import (
    HESSIAN_ATOMS_KEY,
    HESSIAN_ROWS_KEY,
    HessianBlock,
    hessian_rows_to_array,
)
from macelerate.train.losses import hessian_rows_autograd

LABEL_KEYS = ("energy", "free_energy", "forces", "stress", HESSIAN_ATOMS_KEY, HESSIAN_ROWS_KEY)
"""Keys removed from copies before the teacher's labels are written (they would clash)."""


def teacher_provenance(teacher: Potential) -> dict[str, Any]:
    """``atoms.info`` entries naming the teacher (path, SHA-256 of its file, dtype) and version."""
    from macelerate.models.checkpoint import file_sha256

    path = teacher.source.path
    sha = file_sha256(path) if path and Path(path).is_file() else ""
    return {
        "teacher": path or teacher.source.kind,
        "teacher_sha256": sha,
        "teacher_dtype": dtype_name(teacher.dtype),
        "macelerate_version": __version__,
    }


def teacher_hessian_rows(
    teacher: Potential, atoms: Atoms, atom_indices: Sequence[int]
) -> np.ndarray:
    """Rows of the teacher's Hessian ``d²E/dx²`` (eV/Å²) for the listed atoms: [3k, 3 n_atoms].

    Rows are ordered x, y, z of each listed atom; columns are all coordinates (atom-major).
    """
    graph = teacher.build_graph(atoms)
    data = dict(graph)
    positions = graph["positions"].detach().clone().requires_grad_(True)
    data["positions"] = positions
    indices = torch.as_tensor(list(atom_indices), dtype=torch.int64)
    coordinates = (3 * indices[:, None] + torch.arange(3)).reshape(-1).to(teacher.device)
    block = HessianBlock(0, coordinates, None, 0, len(atoms))
    with torch.enable_grad():  # training=True keeps the graph of the forces for a second pass
        out = teacher.model(data, training=True, compute_force=True, compute_stress=False)
        (rows,) = hessian_rows_autograd(out["forces"], positions, [block], create_graph=False)
    return rows.detach().double().cpu().numpy()


def _clean_copy(atoms: Atoms) -> Atoms:
    copy = atoms.copy()
    copy.calc = None
    for key in LABEL_KEYS:
        copy.info.pop(key, None)
        if key in copy.arrays:
            del copy.arrays[key]
    return copy


def label_structures(
    teacher: Potential,
    structures: Sequence[Atoms],
    *,
    hessian_rows: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool = False,
) -> list[Atoms]:
    """Copies of ``structures`` labelled by ``teacher`` (inputs are never modified).

    Args:
        teacher: the labelling model.
        structures: structures to label.
        hessian_rows: number of atoms per structure (chosen at random, without repetition)
            whose three Hessian rows are labelled; 0 for none. Each atom costs three extra
            backward passes through the teacher.
        seed: seed of the atom choice.
        batch_size: structures per teacher call.
        progress: show tqdm bars (labelling, then Hessian rows).

    Returns:
        Labelled copies; see the module docstring for the keys.
    """
    if not isinstance(teacher, Potential):
        from macelerate.models.loading import load

        teacher = load(teacher)
    copies = [_clean_copy(atoms) for atoms in structures]
    provenance = teacher_provenance(teacher)
    periodic = [i for i, atoms in enumerate(copies) if atoms.pbc.all()]
    groups = (periodic, [i for i in range(len(copies)) if i not in set(periodic)])
    bar = tqdm(total=len(copies), desc="label", unit="structure", disable=not progress)
    for indices, with_stress in zip(groups, (True, False)):
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            prediction = teacher.predict([copies[i] for i in chunk], compute_stress=with_stress)
            forces = np.split(prediction.forces, prediction.ptr[1:-1])
            stress = prediction.stress if with_stress else None  # [n, 3, 3] eV/Å³
            for n, i in enumerate(chunk):
                results: dict[str, Any] = {
                    "energy": float(prediction.energy[n]),
                    "forces": forces[n],
                }
                if stress is not None:
                    results["stress"] = full_3x3_to_voigt_6_stress(stress[n])
                copies[i].calc = SinglePointCalculator(copies[i], **results)
            bar.update(len(chunk))
    bar.close()
    rng = np.random.default_rng(seed)
    rows_bar = hessian_rows > 0 and progress
    for atoms in tqdm(copies, desc="Hessian rows", unit="structure", disable=not rows_bar):
        atoms.info.update(provenance)
        if hessian_rows > 0:
            k = min(hessian_rows, len(atoms))
            chosen = np.sort(rng.choice(len(atoms), size=k, replace=False))
            rows = teacher_hessian_rows(teacher, atoms, chosen.tolist())
            atoms.info[HESSIAN_ATOMS_KEY] = chosen.astype(np.int64)
            atoms.arrays[HESSIAN_ROWS_KEY] = hessian_rows_to_array(rows, len(atoms))
    return copies


def _md_snapshots(
    teacher: Potential,
    start: Atoms,
    *,
    temperature: float,
    md_steps: int,
    interval: int,
    timestep_fs: float,
    friction_per_fs: float,
    seed: int,
    bar: tqdm,
) -> list[Atoms]:
    from macelerate.calculator import Calculator
    from macelerate.md import thermalize

    atoms = _clean_copy(start)
    atoms.calc = Calculator(teacher)
    thermalize(atoms, temperature_k=temperature, seed=seed)
    dynamics = Langevin(
        atoms, timestep=timestep_fs * units.fs, temperature_K=temperature,
        friction=friction_per_fs / units.fs, fixcm=False, rng=np.random.default_rng(seed),
    )  # fmt: skip
    snapshots = []
    for step in range(1, md_steps + 1):
        dynamics.run(1)
        bar.update(1)
        if step % interval == 0:
            snapshot = _clean_copy(atoms)
            snapshot.set_momenta(None)
            snapshot.info.update(md_temperature=float(temperature), md_step=step)
            snapshots.append(snapshot)
    return snapshots


def sample_structures(
    teacher: Potential,
    start_structures: Sequence[Atoms],
    *,
    temperatures: Sequence[float] = (300.0, 600.0, 1200.0),
    md_steps: int = 200,
    interval: int = 20,
    rattle_std: float = 0.05,
    n_rattled: int = 5,
    timestep_fs: float = 0.5,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    progress: bool = False,
) -> list[Atoms]:
    """Unlabelled structures around ``start_structures``: teacher-driven MD plus rattling.

    For every start structure and temperature (K), a Langevin run of ``md_steps`` steps of
    ``timestep_fs`` fs contributes a snapshot every ``interval`` steps; then ``n_rattled`` copies
    of each start structure with Gaussian displacements of ``rattle_std`` Å per component.
    Deterministic for a given ``seed``; ``progress`` shows a tqdm bar over all MD steps.
    """
    if interval < 1 or md_steps < 0 or n_rattled < 0 or rattle_std < 0:
        raise ValueError("need interval >= 1, md_steps >= 0, n_rattled >= 0, rattle_std >= 0")
    if not isinstance(teacher, Potential):
        from macelerate.models.loading import load

        teacher = load(teacher)
    samples: list[Atoms] = []
    rng = np.random.default_rng(seed)
    total = len(start_structures) * len(temperatures) * md_steps
    bar = tqdm(total=total, desc="teacher MD", unit="step", disable=not progress)
    for s, start in enumerate(start_structures):
        for t, temperature in enumerate(temperatures):
            samples += _md_snapshots(
                teacher, start, temperature=float(temperature), md_steps=md_steps,
                interval=interval, timestep_fs=timestep_fs, friction_per_fs=friction_per_fs,
                seed=seed + 1000 * s + t, bar=bar,
            )  # fmt: skip
        for _ in range(n_rattled):
            rattled = _clean_copy(start)
            rattled.positions = rattled.positions + rng.normal(0.0, rattle_std, (len(start), 3))
            rattled.info["rattle_std"] = float(rattle_std)
            samples.append(rattled)
    bar.close()
    return samples


def write_structures(path: str | Path, structures: Sequence[Atoms]) -> Path:
    """Write ``structures`` (with their labels) as extended XYZ, atomically."""
    return write_atomically(
        path, lambda tmp: ase.io.write(str(tmp), list(structures), format="extxyz")
    )
