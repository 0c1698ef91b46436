"""The smooth cap's torch threshold search: same roots as the host search, and TorchScript-ready."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate._mace import quiet_model_construction
from macelerate.graph import build_graph
from macelerate.graph.smooth_cap import SmoothCapRadialEmbedding, cap_thresholds
from macelerate.graph.smooth_cap_torch import TOLERANCE, soft_count_thresholds
from macelerate.testing import tiny_mace

R_MAX, WIDTH = 4.0, 0.2


def _both(lengths, receivers, *, n_nodes, k, ceiling=R_MAX + WIDTH):
    host = cap_thresholds(
        lengths, receivers, n_nodes=n_nodes, max_neighbors=k, width=WIDTH, ceiling=ceiling
    )
    return host, soft_count_thresholds(lengths, receivers, n_nodes, k, WIDTH, ceiling)


def _soft_count(lengths, receivers, t, n_nodes):
    x = ((t[receivers] - lengths) / WIDTH).clamp(-1.0, 1.0)
    u = (x + 1.0) * 0.5
    values = u * u * u * (10.0 + u * (-15.0 + 6.0 * u))
    return torch.zeros(n_nodes, dtype=torch.float64).index_add(0, receivers, values)


@pytest.mark.parametrize("k", [1, 6, 30])
def test_torch_search_finds_the_host_roots(k):
    generator = torch.Generator().manual_seed(k)
    lengths = 0.8 + 3.5 * torch.rand(600, generator=generator, dtype=torch.float64)
    receivers = torch.randint(0, 20, (600,), generator=generator)  # ~30 each; 20, 21: none
    host, scripted = _both(lengths, receivers, n_nodes=22, k=k)
    torch.testing.assert_close(scripted, host, rtol=0, atol=1e-12)
    capped = torch.bincount(receivers, minlength=22) > k
    assert capped.any() and (scripted[~capped] == R_MAX + WIDTH).all()
    counts = _soft_count(lengths, receivers, scripted, 22)[capped & (scripted < R_MAX + WIDTH)]
    assert (counts - k).abs().max() <= 10 * TOLERANCE * k


def test_torch_search_on_degenerate_shells_and_a_triple_root():
    shell = torch.full((12,), 2.0, dtype=torch.float64)  # 12 equidistant: F = k at one point
    gap = torch.tensor([1.0, 1.0 + 2 * WIDTH], dtype=torch.float64)  # F - 1 ~ (t - t0)^3
    lengths = torch.cat([shell, gap])
    receivers = torch.tensor([0] * 12 + [1, 1])
    host, scripted = _both(lengths, receivers, n_nodes=2, k=4)
    torch.testing.assert_close(scripted[0], host[0], rtol=0, atol=1e-12)
    (triple,) = soft_count_thresholds(gap, torch.zeros(2, dtype=torch.int64), 1, 1, WIDTH, 5.0)
    assert triple.item() == pytest.approx(1.0 + WIDTH, abs=1e-3 * WIDTH)


def test_a_far_threshold_stops_at_the_ceiling_and_float32_lengths_work():
    lengths = torch.tensor([3.9, 4.0, 4.1, 4.2, 4.3], dtype=torch.float32)  # k-th beyond r_c
    host, scripted = _both(lengths, torch.zeros(5, dtype=torch.int64), n_nodes=1, k=4)
    assert scripted.dtype == torch.float64
    torch.testing.assert_close(scripted, host, rtol=0, atol=1e-12)
    assert scripted.item() == R_MAX + WIDTH


@pytest.mark.parametrize("k", [3, 30])
def test_edges_beyond_the_ceiling_change_no_threshold(k):
    """Padding a graph with far edges (as a metatomic export does) leaves every root; an atom
    with k or fewer near edges stays uncapped however many far edges it gets."""
    generator = torch.Generator().manual_seed(k)
    lengths = 0.8 + 3.5 * torch.rand(300, generator=generator, dtype=torch.float64)
    receivers = torch.randint(0, 10, (300,), generator=generator)  # ~30 each; 10, 11: none
    lengths, receivers = (
        torch.cat([lengths, torch.tensor([1.0, 2.0])]),
        torch.cat([receivers, torch.tensor([11, 11])]),
    )  # atom 11: two near edges
    plain = soft_count_thresholds(lengths, receivers, 12, k, WIDTH, R_MAX + WIDTH)
    far = torch.full((40,), 2 * R_MAX + 10.0, dtype=torch.float64)
    padded = soft_count_thresholds(
        torch.cat([lengths, far]), torch.cat([receivers, torch.arange(40) % 12]), 12, k, WIDTH,
        R_MAX + WIDTH,
    )  # fmt: skip
    torch.testing.assert_close(padded, plain, rtol=0, atol=0)
    assert padded[11] == R_MAX + WIDTH


def test_scripted_capped_model_equals_the_python_one():
    plain = tiny_mace([1, 6, 8], max_ell=1, r_max=R_MAX)
    with quiet_model_construction():
        model = copy.deepcopy(plain)
    model.radial_embedding = SmoothCapRadialEmbedding(
        model.radial_embedding, max_neighbors=3, width=WIDTH
    )
    with quiet_model_construction():
        from e3nn.util import jit

        scripted = jit.compile(copy.deepcopy(model))
    rng = np.random.default_rng(3)
    atoms = Atoms("C6H6O2", positions=rng.random((14, 3)) * 4.5, cell=np.eye(3) * 4.5, pbc=True)
    graph = build_graph(atoms, cutoff=R_MAX + 2 * WIDTH, z_table=[1, 6, 8], min_distance=None)
    want = model(dict(graph), compute_force=True, compute_stress=True)
    got = scripted(dict(graph), compute_force=True, compute_stress=True)
    for key in ("energy", "forces", "stress"):
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-10)
    # the cap acts on this structure: the uncapped model gives other forces
    uncapped = plain(dict(graph), compute_force=True)["forces"]
    assert (uncapped - want["forces"]).abs().max() > 1e-3
