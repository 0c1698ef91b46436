"""build_graph: mace-torch's keys and layout, batching, and agreement with mace's own pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate.graph.batch import GRAPH_KEYS, build_graph


def _edges(graph, lo, hi):
    ei = graph["edge_index"].numpy()
    mask = (ei[0] >= lo) & (ei[0] < hi)
    return {
        (int(a) - lo, int(b) - lo, *map(int, s))
        for a, b, s in zip(ei[0, mask], ei[1, mask], graph["unit_shifts"].numpy()[mask])
    }


def test_keys_shapes_and_dtypes(silicon, ethanol):
    graph = build_graph([silicon, ethanol], cutoff=3.0, z_table=[1, 6, 8, 14])
    assert set(graph) == set(GRAPH_KEYS)
    n = len(silicon) + len(ethanol)
    assert graph["positions"].shape == (n, 3) and graph["positions"].dtype == torch.float64
    assert graph["node_attrs"].shape == (n, 4)
    assert torch.equal(graph["node_attrs"].sum(1), torch.ones(n, dtype=torch.float64))
    assert graph["cell"].shape == (6, 3)
    assert graph["ptr"].tolist() == [0, len(silicon), n]
    assert graph["batch"].tolist() == [0] * len(silicon) + [1] * len(ethanol)
    assert graph["head"].tolist() == [0, 0]
    e = graph["edge_index"].shape[1]
    assert graph["shifts"].shape == (e, 3) and graph["unit_shifts"].shape == (e, 3)
    # shifts are unit_shifts @ cell of each edge's own structure
    owner = graph["batch"][graph["edge_index"][0]]
    cells = graph["cell"].view(-1, 3, 3)[owner]
    torch.testing.assert_close(
        graph["shifts"], torch.einsum("ei,eij->ej", graph["unit_shifts"], cells)
    )


def test_batched_edges_equal_single_structure_edges(silicon, ethanol):
    both = build_graph([silicon, ethanol], cutoff=3.0)
    alone_si = build_graph(silicon, cutoff=3.0)
    alone_eth = build_graph(ethanol, cutoff=3.0)
    assert _edges(both, 0, len(silicon)) == _edges(alone_si, 0, len(silicon))
    n = len(silicon) + len(ethanol)
    assert _edges(both, len(silicon), n) == _edges(alone_eth, 0, len(ethanol))


def test_inputs_are_not_modified(silicon):
    before = (silicon.positions.copy(), silicon.cell.array.copy(), silicon.pbc.copy())
    build_graph(silicon, cutoff=3.0, dtype=torch.float32)
    assert np.array_equal(silicon.positions, before[0]) and np.array_equal(
        silicon.cell.array, before[1]
    )
    assert np.array_equal(silicon.pbc, before[2])


def test_atom_without_neighbours_and_mixed_pbc():
    slab = Atoms(
        "Si2", positions=[[0, 0, 0], [0, 0, 9.0]], cell=[2.5, 2.5, 0.0], pbc=[True, True, False]
    )
    graph = build_graph(slab, cutoff=3.0)
    ei = graph["edge_index"]
    # each atom sees its own in-plane images only; no edge crosses the 9 Å gap
    assert (ei[0] == ei[1]).all()
    assert (graph["unit_shifts"][:, 2] == 0).all()


def test_hard_cap_limits_incoming_edges(silicon):
    graph = build_graph(silicon, cutoff=5.0, max_neighbors=6)
    counts = torch.bincount(graph["edge_index"][1], minlength=len(silicon))
    assert counts.max() <= 6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_graph_as_mace_atomic_data(silicon, ethanol, dtype):
    from mace import data as mace_data
    from mace.tools import utils

    for atoms in (silicon, ethanol):
        config = mace_data.config_from_atoms(atoms)
        reference = mace_data.AtomicData.from_config(
            config, z_table=utils.AtomicNumberTable([1, 6, 8, 14]), cutoff=3.0
        )
        ours = build_graph(atoms, cutoff=3.0, z_table=[1, 6, 8, 14], dtype=dtype)
        ref_edges = {
            (int(a), int(b), *map(int, s))
            for a, b, s in zip(*reference["edge_index"].numpy(), reference["unit_shifts"].numpy())
        }
        assert _edges(ours, 0, len(atoms)) == ref_edges
        torch.testing.assert_close(ours["node_attrs"].double(), reference["node_attrs"].double())


def test_float32_far_from_the_origin_warns(ethanol):
    from macelerate.errors import PrecisionLossWarning

    far = ethanol.copy()
    far.positions += 1e6  # float32 spacing at 1e6 is 0.0625 Å
    with pytest.warns(PrecisionLossWarning, match=r"1e\+06 Å.*precision='fp32'.*origin"):
        build_graph(far, cutoff=3.0, dtype=torch.float32)
    assert issubclass(PrecisionLossWarning, UserWarning)
    build_graph(far, cutoff=3.0, dtype=torch.float64)  # float64: exact enough, no warning
    near = ethanol.copy()
    near.positions += 500.0  # float32 rounds by < 1e-4 Å here
    build_graph(near, cutoff=3.0, dtype=torch.float32)
