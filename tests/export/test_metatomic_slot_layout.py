"""Metatomic exports hand mace its edges in the fused convolution's slot layout, padded with
far self-edges: the padding changes no energy, force or stress, and only models whose every
per-edge term vanishes beyond the cutoff get it."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.neighborlist import neighbor_list

from macelerate.calculator import Calculator
from macelerate.export import export_metatomic
from macelerate.export._metatomic_conv import fuse_for_export, slot_width, takes_slot_layout
from macelerate.testing import tiny_mace
from tests.export import ase_results

CUTOFF = 4.0


@pytest.fixture
def module(metatomic_ase):
    from macelerate.export._metatomic_module import MaceMetatomicModule

    return MaceMetatomicModule(torch.nn.Identity(), [1, 14], CUTOFF, slot_layout=True)


def _graph(n_atoms: int, receivers: list[int], seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    edge_index = torch.stack(
        [torch.randint(0, n_atoms, (len(receivers),), generator=generator),
         torch.tensor(receivers)]
    )  # fmt: skip
    unit_shifts = torch.randint(-1, 2, (len(receivers), 3), generator=generator).double()
    shifts = unit_shifts * 2.5
    return edge_index, unit_shifts, shifts


def test_padding_keeps_every_edge_and_adds_far_self_edges(module):
    receivers = [2, 0, 1, 2, 0, 2, 1, 0, 2, 1, 1]  # counts 3, 4, 4: 12 slots for 11 edges
    edge_index, unit_shifts, shifts = _graph(3, receivers)
    padded_index, padded_units, padded_shifts = module._slot_layout(
        edge_index, unit_shifts, shifts, 3
    )
    assert padded_index.shape == (2, 12)
    assert slot_width(padded_index[1], 3) == 4
    rows = {tuple(row) for row in torch.cat([edge_index.T.double(), shifts], 1).tolist()}
    padded_rows = [
        tuple(row) for row in torch.cat([padded_index.T.double(), padded_shifts], 1).tolist()
    ]
    real = [row for row in padded_rows if row[2] != module.padding_length]
    assert sorted(real) == sorted(rows) and len(real) == 11  # every edge, once
    padding = [row for row in padded_rows if row[2] == module.padding_length]
    assert len(padding) == 1 and padding[0][0] == padding[0][1] == 0.0  # self-edge of atom 0
    assert module.padding_length > 2 * CUTOFF
    assert float(padded_units.abs().sum()) == float(unit_shifts.abs().sum())


def test_uneven_graphs_are_handed_over_unpadded(module):
    receivers = [0] * 8 + [1, 2]  # 24 slots for 10 edges: more padding than allowed
    edge_index, unit_shifts, shifts = _graph(3, receivers)
    out = module._slot_layout(edge_index, unit_shifts, shifts, 3)
    assert out[0] is edge_index and out[2] is shifts
    assert slot_width(edge_index[1], 3) == 0


def test_slot_width_detects_the_layout():
    assert slot_width(torch.tensor([0, 0, 1, 1, 2, 2]), 3) == 2
    assert slot_width(torch.tensor([0, 1, 0, 1, 2, 2]), 3) == 0  # not receiver-major
    assert slot_width(torch.tensor([0, 0, 1, 1, 2]), 3) == 0  # not n * K edges
    assert slot_width(torch.tensor([], dtype=torch.long), 3) == 0


def test_only_models_without_other_edge_terms_take_the_layout(students):
    plain = tiny_mace([1, 14])
    fuse_for_export(plain)
    assert takes_slot_layout(plain)
    unfused = tiny_mace([1, 14])  # e3nn convolutions read the edges themselves
    assert not takes_slot_layout(unfused)
    capped = copy.deepcopy(students["smooth"].backbone)  # its count skips far edges
    fuse_for_export(capped)
    assert takes_slot_layout(capped)
    hybrid = copy.deepcopy(students["hybrid"].backbone)  # an attention layer reads the edges
    fuse_for_export(hybrid)
    assert not takes_slot_layout(hybrid)


def _vacancy() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
    del atoms[3]  # a vacancy: its neighbours have fewer edges, so the layout is padded
    atoms.rattle(0.05, rng=np.random.default_rng(2))
    return atoms


def test_padded_export_equals_macelerate_on_uneven_neighbour_counts(tmp_path, metatomic_ase):
    model = tiny_mace([1, 6, 8, 14], seed=3)
    atoms = _vacancy()
    counts = np.bincount(neighbor_list("i", atoms, CUTOFF))
    assert counts.min() < counts.max() and len(atoms) * counts.max() <= 1.25 * counts.sum()
    out = tmp_path / "tiny.pt"
    export_metatomic(model, out)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu")
    assert bool(calculator.model().module.slot_layout)
    got = ase_results(calculator, atoms)
    want = ase_results(Calculator(model, dtype="float64"), atoms)
    assert abs(got["energy"] - want["energy"]) <= 1e-8
    assert np.abs(got["forces"] - want["forces"]).max() <= 1e-8
    assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8


def test_capped_exports_drop_the_edges_of_weight_zero(metatomic_ase, silicon):
    from macelerate.export._metatomic_module import MaceMetatomicModule
    from macelerate.graph import build_graph
    from macelerate.graph.smooth_cap import smooth_cap_keep

    k, width = 3, 0.2
    cap = (k, width, CUTOFF + width, 0.0)
    module = MaceMetatomicModule(torch.nn.Identity(), [14], CUTOFF + 2 * width, cap=cap)
    graph = build_graph(silicon, cutoff=CUTOFF + 2 * width, z_table=[14], dtype=torch.float64)
    edge_index, unit_shifts, shifts = graph["edge_index"], graph["unit_shifts"], graph["shifts"]
    kept_index, _, kept_shifts = module._capped_edges(
        graph["positions"], edge_index, unit_shifts, shifts
    )
    vectors = graph["positions"][edge_index[1]] - graph["positions"][edge_index[0]] + shifts
    want = smooth_cap_keep(
        edge_index.numpy(), torch.linalg.vector_norm(vectors, dim=1).numpy(),
        n_nodes=len(silicon), max_neighbors=k, width=width, cutoff=CUTOFF,
    )  # fmt: skip
    assert 0 < len(want) < edge_index.shape[1]  # the cap drops edges here
    assert torch.equal(kept_index, edge_index[:, torch.from_numpy(want)])
    assert torch.equal(kept_shifts, shifts[torch.from_numpy(want)])


def test_capped_and_padded_student_equals_macelerate(tmp_path, metatomic_ase, students):
    student = students["smooth"]  # cap 3: most edges dropped, uneven counts padded
    out = tmp_path / "smooth.pt"
    export_metatomic(student, out)
    calculator = metatomic_ase.MetatomicCalculator(out, device="cpu")
    module = calculator.model().module
    assert bool(module.capped) and bool(module.slot_layout)
    atoms = _vacancy()
    got = ase_results(calculator, atoms)
    want = ase_results(Calculator(student, dtype="float64"), atoms)
    assert abs(got["energy"] - want["energy"]) <= 1e-8
    assert np.abs(got["forces"] - want["forces"]).max() <= 1e-8
    assert np.abs(got["stress"] - want["stress"]).max() <= 1e-8
