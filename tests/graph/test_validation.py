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


def test_cell_widths_are_plane_spacings():
    from macelerate.graph.validation import periodic_widths

    assert periodic_widths(np.eye(3) * 3.0, np.array([True] * 3)) == {0: 3.0, 1: 3.0, 2: 3.0}
    sheared = np.array([[4.0, 0.0, 0.0], [3.9, 0.5, 0.0], [0.0, 0.0, 6.0]])
    widths = periodic_widths(sheared, np.array([True] * 3))
    volume = abs(np.linalg.det(sheared))
    assert widths[0] == pytest.approx(volume / np.linalg.norm(np.cross(sheared[1], sheared[2])))
    assert widths[1] == pytest.approx(0.5) and widths[2] == pytest.approx(6.0)
    slab = np.array([[2.5, 0.0, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 0.0]])
    assert periodic_widths(slab, np.array([True, True, False])) == {0: 2.5, 1: 2.5}


def test_nearly_zero_cell_is_refused_before_the_neighbour_list():
    """A 0.01 Å cell used to make vesin allocate ~5 GB and crash; now it is one clear error."""
    atoms = Atoms("Si2", positions=[[0, 0, 0], [0.005] * 3], cell=np.eye(3) * 0.01, pbc=True)
    with pytest.raises(StructureError, match=r"only 0.01 Å wide along a.*min_distance=0.2 Å"):
        build_graph(atoms, cutoff=5.0)
    with pytest.raises(StructureError, match=r"reaches 1e\+09 periodic images.*in Å"):
        build_graph(atoms, cutoff=5.0, min_distance=None)


def test_radius_graph_refuses_too_many_images():
    from macelerate.graph.neighbors import radius_graph

    with pytest.raises(StructureError, match="periodic images"):
        radius_graph(np.zeros((1, 3)), np.eye(3) * 0.01, np.ones(3, dtype=bool), cutoff=5.0)
    edges, _, _ = radius_graph(np.zeros((1, 3)), np.eye(3) * 0.6, np.ones(3, dtype=bool), cutoff=2)
    assert edges.shape[1] > 0  # a small but sane cell (9^3 images) still works


def test_a_thin_skewed_cell_names_its_direction(silicon):
    silicon.set_cell([[5.43, 0, 0], [5.4, 0.1, 0], [0, 0, 5.43]], scale_atoms=True)
    with pytest.raises(StructureError, match="0.1 Å wide along b"):
        build_graph(silicon, cutoff=3.0)  # every atom overlaps its images along b
