"""Check a written export against macelerate: the same probes through both ASE calculators.

Every export is checked before it is moved into place: the written file, loaded back by the
engine that will run it, and :class:`macelerate.Calculator` on the model that was written must
agree on energies and forces (and stress, for periodic probes) within :data:`FORCE_TOLERANCE`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import all_changes

from macelerate.export.report import Agreement, ExportError

FORCE_TOLERANCE = {"float64": 1e-6, "float32": 1e-3}
"""Largest |ΔF| component (eV/Å) and |ΔE| per atom (eV) an export may show, by dtype."""


def probe_structures(atomic_numbers: Sequence[int]) -> list[tuple[str, Atoms]]:
    """A periodic and a non-periodic rattled structure holding every element of the model.

    The non-periodic cluster sits in a 20 Å box with ``pbc=False``.

    Returns:
        ``[("periodic fcc, 8 atoms", atoms), ("cluster, 6 atoms", atoms)]``; nearest neighbours
        about 2.5 Å apart, so every model sees neighbours within its cutoff.
    """
    rng = np.random.default_rng(0)
    crystal = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    crystal.numbers = [int(atomic_numbers[i % len(atomic_numbers)]) for i in range(len(crystal))]
    crystal.rattle(0.05, rng=rng)
    cluster = Atoms(  # a box, though not periodic: some engines' neighbour lists invert the cell
        numbers=crystal.numbers[:6], positions=crystal.positions[:6], cell=np.eye(3) * 20.0
    )
    return [
        (f"periodic fcc, {len(crystal)} atoms", crystal),
        (f"cluster, {len(cluster)} atoms", cluster),
    ]


def _results(calculator: AseCalculator, atoms: Atoms) -> dict[str, np.ndarray]:
    """Energy [1] eV, forces [n_atoms, 3] eV/Å and, for periodic cells, stress [6] eV/Å³
    (Voigt), from one ``calculate`` call."""
    properties = ["energy", "forces"] + (["stress"] if atoms.pbc.all() else [])
    calculator.calculate(atoms.copy(), properties, all_changes)
    return {name: np.atleast_1d(np.asarray(calculator.results[name])) for name in properties}


def compare(
    reference: AseCalculator,
    candidate: AseCalculator,
    structures: Sequence[tuple[str, Atoms]],
    *,
    forces_key: str = "forces",
) -> Agreement:
    """Largest differences of ``candidate`` from ``reference`` over ``structures``."""
    d_energy, d_force, d_stress = 0.0, 0.0, None
    for _, atoms in structures:
        want = _results(reference, atoms)
        got = _results(candidate, atoms)
        d_energy = max(d_energy, float(np.abs(want["energy"] - got["energy"]).max()))
        d_force = max(d_force, float(np.abs(want[forces_key] - got[forces_key]).max()))
        if "stress" in want:
            d_stress = max(d_stress or 0.0, float(np.abs(want["stress"] - got["stress"]).max()))
    return Agreement(d_energy, d_force, d_stress, tuple(name for name, _ in structures))


def check_agreement(
    agreement: Agreement,
    *,
    dtype: str,
    n_atoms: int,
    what: str,
    tolerance: float | None = None,
) -> None:
    """Refuse an export that disagrees beyond ``tolerance`` (per atom for energies).

    Args:
        agreement: from :func:`compare`.
        dtype: the export's dtype, which sets the default tolerance (:data:`FORCE_TOLERANCE`).
        n_atoms: atoms of the largest probe (energies may differ by ``tolerance`` per atom).
        what: the file, for the message.
        tolerance: eV/Å, for engines that approximate by design (default: by ``dtype``).

    Raises:
        ExportError: naming the differences; the file is then not written.
    """
    tolerance = FORCE_TOLERANCE[dtype] if tolerance is None else tolerance
    energy_ok = agreement.max_abs_energy_diff <= tolerance * max(1, n_atoms)
    if energy_ok and agreement.max_abs_force_diff <= tolerance:
        return
    raise ExportError(
        f"the written {what} disagrees with macelerate on the same model (max |ΔE| "
        f"{agreement.max_abs_energy_diff:.2e} eV, max |ΔF| {agreement.max_abs_force_diff:.2e} "
        f"eV/Å; {tolerance:.0e} eV/Å allowed in {dtype}); nothing was written. Please report this "
        "model to macelerate"
    )
