"""Bad structures: one clear error each, naming the problem and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms

from macelerate.errors import StructureError, UnknownElementError
from macelerate.graph.batch import build_graph


def test_unknown_element_is_named(silicon):
    silicon[0].symbol = "Fe"
    with pytest.raises(UnknownElementError, match=r"Fe \(Z=26\).*trained on H, C, O, Si"):
        build_graph(silicon, cutoff=3.0, z_table=[1, 6, 8, 14])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_positions(silicon, bad):
    silicon.positions[3, 1] = bad
    with pytest.raises(StructureError, match=r"NaN or infinite positions at atoms \[3\]"):
        build_graph(silicon, cutoff=3.0)


def test_overlapping_atoms(silicon):
    silicon.positions[1] = silicon.positions[0] + [0.05, 0, 0]
    with pytest.raises(StructureError, match="overlapping atoms .*min_distance"):
        build_graph(silicon, cutoff=3.0)
    build_graph(silicon, cutoff=3.0, min_distance=None)  # the documented way out


def test_empty_structure_and_empty_list():
    with pytest.raises(StructureError, match="empty"):
        build_graph(Atoms(), cutoff=3.0)
    with pytest.raises(StructureError, match="no structures"):
        build_graph([], cutoff=3.0)


def test_zero_volume_periodic_cell():
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.2, 1.2, 1.2]], cell=np.zeros((3, 3)), pbc=True)
    with pytest.raises(StructureError, match="zero volume.*pbc=False"):
        build_graph(atoms, cutoff=3.0)


def test_error_names_the_structure_in_a_batch(silicon, ethanol):
    ethanol.positions[0] = np.nan
    with pytest.raises(StructureError, match="structure 1 "):
        build_graph([silicon, ethanol], cutoff=3.0)


def test_not_an_atoms_object():
    with pytest.raises(StructureError, match="not an ase.Atoms"):
        build_graph([np.zeros((3, 3))], cutoff=3.0)
