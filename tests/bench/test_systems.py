"""Built-in benchmark systems: the model's elements only, no overlaps, the requested size."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ase.data import covalent_radii
from ase.neighborlist import neighbor_list

from macelerate.bench.repeat import choose_repeat
from macelerate.bench.systems import SYSTEMS, build_system, repeat_structure
from macelerate.errors import StructureError

HCOSI = [1, 6, 8, 14]


def _shortest_distance(atoms, cutoff: float = 3.0) -> float:
    distances = neighbor_list("d", atoms, cutoff)
    return float(distances.min()) if len(distances) else math.inf


@pytest.mark.parametrize("name", SYSTEMS)
@pytest.mark.parametrize("n_atoms", [40, 300])
def test_builtin_systems_are_sensible(name, n_atoms):
    built = build_system(name, HCOSI, n_atoms)
    atoms = built.atoms
    assert set(atoms.numbers.tolist()) <= set(HCOSI)
    assert n_atoms <= len(atoms) < 2 * n_atoms, (built.label, len(atoms))
    assert _shortest_distance(atoms) > 0.9  # O-H bonds (0.97 Å) are the shortest
    assert atoms.pbc.all() and atoms.get_volume() > 0
    assert built.label.startswith(name + "(") and "x".join(map(str, built.repeat)) in built.label
    # periodic images of neighbouring cells do not overlap either (the check is periodic)
    if name == "oxide-slab":  # vacuum along z between slab images
        height = np.ptp(atoms.positions[:, 2])
        assert atoms.cell.lengths()[2] - height > 10.0
    if name == "dense-solid":  # diamond carbon with the covalent bond length
        assert built.label.startswith("dense-solid(C, diamond")
        assert _shortest_distance(atoms) == pytest.approx(2 * covalent_radii[6], abs=0.15)


def test_small_requests_give_at_least_one_unit():
    # 8 atoms is below one liquid or slab unit: the smallest whole unit is returned
    for name in SYSTEMS:
        assert len(build_system(name, HCOSI, 8).atoms) >= 8
    assert len(build_system("dense-solid", HCOSI, 8).atoms) == 8  # the 8-atom diamond cube


def test_systems_follow_the_model_elements():
    silicon = build_system("dense-solid", [14], 64)
    assert set(silicon.atoms.numbers) == {14} and "Si, diamond 2x2x2" in silicon.label
    copper = build_system("dense-solid", [29], 100).atoms
    assert _shortest_distance(copper) == pytest.approx(2 * covalent_radii[29], abs=0.15)
    magnesia = build_system("oxide-slab", [8, 12], 64)
    assert set(magnesia.atoms.numbers) == {8, 12} and "Mg/O, rocksalt(001)" in magnesia.label
    water = build_system("molecular-liquid", [1, 8], 60)
    assert "H2O" in water.label and np.bincount(water.atoms.numbers)[1] == 2 * np.sum(
        water.atoms.numbers == 8
    )
    dimers = build_system("molecular-liquid", [14], 50)
    assert "Si2" in dimers.label and _shortest_distance(dimers.atoms) > 2.0
    with pytest.raises(StructureError, match="anion"):
        build_system("oxide-slab", [14], 64)
    with pytest.raises(StructureError, match="unknown system"):
        build_system("gas", HCOSI, 64)


def test_repeat_structure_keeps_the_input(silicon, ethanol):
    before = silicon.positions.copy()
    built = repeat_structure(silicon, 60, name="file:si.xyz")
    assert len(built.atoms) == 64 and built.label == "file:si.xyz(2x2x2)"
    np.testing.assert_array_equal(silicon.positions, before)
    np.testing.assert_allclose(built.atoms.positions[:8], before)  # repeated, not rattled
    molecules = repeat_structure(ethanol, 70, name="file:ethanol.xyz", gap=3.0)
    assert len(molecules.atoms) >= 70 and not molecules.atoms.pbc.any()
    assert _shortest_distance(molecules.atoms) == pytest.approx(_shortest_distance(ethanol))
    assert ethanol.cell.volume == 0  # the input molecule got no cell


def test_choose_repeat_prefers_few_and_isotropic():
    assert choose_repeat((1, 1, 1), 8, 1000) == (5, 5, 5)
    assert choose_repeat((1, 1, 1), 4, 1000) == (6, 6, 7)  # 252 units, not 5x5x10
    assert choose_repeat((1, 1, 2), 1, 8) == (3, 3, 1)  # a 3x3x2 box beats 2x2x4 for 1 more
    assert choose_repeat((1, 1, 30), 10, 100, axes=(True, True, False))[2] == 1
    assert choose_repeat((1, 1, 1), 1, 10**6) == (100, 100, 100)
