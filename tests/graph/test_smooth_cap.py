"""Smooth neighbour cap: weight properties, sparsity, and a C1 capped MACE energy."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate._mace import quiet_model_construction
from macelerate.graph import build_graph, smooth_cap
from macelerate.graph.smooth_cap import (
    SmoothCapRadialEmbedding,
    cap_thresholds,
    edge_lengths,
    select_smooth_cap_edges,
    smooth_cap_keep,
    smooth_cap_weights,
    threshold_guess,
)
from macelerate.testing import rotation_matrix, tiny_mace

R_MAX, WIDTH = 4.0, 0.2


def _weights(lengths, receivers, *, n_nodes, k, width=WIDTH, ceiling=R_MAX + WIDTH):
    return smooth_cap_weights(
        lengths, receivers, n_nodes=n_nodes, max_neighbors=k, width=width, ceiling=ceiling
    )


def test_weights_sum_to_k_with_at_most_k_full_weights():
    generator = torch.Generator().manual_seed(0)
    lengths = 0.8 + 3.0 * torch.rand(200, generator=generator, dtype=torch.float64)
    receivers = torch.randint(0, 8, (200,), generator=generator)
    weights = _weights(lengths, receivers, n_nodes=8, k=6)
    for node in range(8):
        w = weights[receivers == node]
        assert w.sum().item() == pytest.approx(6.0, abs=1e-9)
        assert int((w == 1.0).sum()) <= 6
        assert ((w > 0) & (w < 1)).any()  # the switch is active: partial weights exist


def test_equidistant_shell_is_split_evenly_and_few_neighbours_keep_full_weight():
    shell = torch.full((12,), 2.0, dtype=torch.float64)
    weights = _weights(shell, torch.zeros(12, dtype=torch.int64), n_nodes=1, k=4)
    torch.testing.assert_close(weights, torch.full_like(shell, 4.0 / 12.0))
    few = torch.tensor([1.0, 2.5, 3.9], dtype=torch.float64)
    weights = _weights(few, torch.zeros(3, dtype=torch.int64), n_nodes=1, k=3)
    assert torch.equal(weights, torch.ones(3, dtype=torch.float64))


def test_weight_gradients_match_finite_differences():
    lengths = torch.tensor([1.0, 1.9, 2.0, 2.05, 2.3, 1.5, 1.6], dtype=torch.float64)
    receivers = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    lengths.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda d: _weights(d, receivers, n_nodes=2, k=2), (lengths,))


def test_weights_are_continuous_when_kth_and_next_neighbour_swap():
    crossing = []
    for h in (1e-2, 1e-3):
        path = torch.arange(-0.3, 0.3 + h / 2, h, dtype=torch.float64)  # one receiver per point
        lengths = torch.stack([torch.ones_like(path), 2.0 + path, 2.0 - path], dim=1).flatten()
        receivers = torch.arange(path.numel()).repeat_interleave(3)
        weights = _weights(lengths, receivers, n_nodes=path.numel(), k=2).reshape(-1, 3)
        crossing.append(weights.diff(dim=0).abs().max().item())
    assert crossing[1] < crossing[0] / 5  # jumps shrink with the step: no discontinuity


def test_pruning_keeps_exactly_the_edges_with_nonzero_weight():
    rng = np.random.default_rng(2)
    atoms = Atoms("C30", positions=rng.random((30, 3)) * 5.0, cell=np.eye(3) * 5.0, pbc=True)
    graph = build_graph(atoms, cutoff=R_MAX + 2 * WIDTH, min_distance=None)
    lengths, receivers = edge_lengths(graph), graph["edge_index"][1]
    weights = _weights(lengths, receivers, n_nodes=30, k=8)
    keep = smooth_cap_keep(
        graph["edge_index"].numpy(), lengths.numpy(), n_nodes=30, max_neighbors=8, width=WIDTH,
        cutoff=R_MAX,
    )  # fmt: skip
    dropped = np.setdiff1d(np.arange(lengths.numel()), keep)
    assert dropped.size > 0.5 * lengths.numel()  # sparse: most edges go
    assert torch.all(weights[dropped] == 0)
    assert torch.all(weights[torch.from_numpy(keep)] > 0)
    pruned = select_smooth_cap_edges(graph, max_neighbors=8, width=WIDTH, cutoff=R_MAX)
    torch.testing.assert_close(
        _weights(lengths[keep], pruned["edge_index"][1], n_nodes=30, k=8), weights[keep],
        rtol=0, atol=1e-12,
    )  # fmt: skip
    assert pruned["edge_index"].shape[1] == keep.size and graph["edge_index"].shape[1] > keep.size


def _soft_count(lengths, receivers, thresholds, *, n_nodes, width=WIDTH):
    x = (thresholds[receivers] - lengths) / width
    return torch.zeros(n_nodes, dtype=torch.float64).index_add_(
        0, receivers, smooth_cap.smoothstep(x)
    )


def test_threshold_at_a_triple_root_is_found_in_few_steps(monkeypatch):
    # k = 1 and a gap of exactly 2δ: the first switch ends where the second starts, so F - 1
    # behaves like (t - t0)^3 at the root, where plain Newton converges only linearly
    lengths = torch.tensor([1.0, 1.0 + 2 * WIDTH], dtype=torch.float64)
    receivers = torch.zeros(2, dtype=torch.int64)
    evaluations = []
    original = smooth_cap._switch_sums
    monkeypatch.setattr(smooth_cap, "_switch_sums",
                        lambda *args: evaluations.append(1) or original(*args))  # fmt: skip
    (t,) = cap_thresholds(lengths, receivers, n_nodes=1, max_neighbors=1, width=WIDTH, ceiling=5.0)
    count = _soft_count(lengths, receivers, t[None], n_nodes=1)
    assert abs(count.item() - 1.0) <= smooth_cap.TOLERANCE
    assert t.item() == pytest.approx(1.0 + WIDTH, abs=1e-3 * WIDTH)
    assert len(evaluations) <= 8  # Newton steps safeguarded by bisection took 19 here


def _random_graph(seed):
    rng = np.random.default_rng(seed)
    atoms = Atoms("C40", positions=rng.random((40, 3)) * 6.0, cell=np.eye(3) * 6.0, pbc=True)
    graph = build_graph(atoms, cutoff=R_MAX + 2 * WIDTH, min_distance=None)
    return graph, edge_lengths(graph), graph["edge_index"][1]


def test_a_guess_from_float64_lengths_gives_the_roots_of_float32_lengths_without_a_sort(
    monkeypatch,
):
    _, lengths, receivers = _random_graph(6)
    options = {"n_nodes": 40, "max_neighbors": 8, "width": WIDTH, "ceiling": R_MAX + WIDTH}
    guess = cap_thresholds(lengths, receivers, **options)
    rounded = lengths.float().double()  # what a float32 model computes
    fresh = cap_thresholds(rounded, receivers, **options)

    def no_sort(*args, **kwargs):
        raise AssertionError("the guess should have been used")

    monkeypatch.setattr(smooth_cap, "_kth_lengths", no_sort)
    warm = cap_thresholds(rounded, receivers, guess=guess, **options)
    capped = torch.bincount(receivers, minlength=40) > 8
    assert capped.sum() > 30 and (warm[capped] < R_MAX + WIDTH).any()
    counts = _soft_count(rounded, receivers, warm, n_nodes=40)
    inside = capped & (warm < R_MAX + WIDTH)
    assert (counts[inside] - 8).abs().max() <= 8 * smooth_cap.TOLERANCE
    torch.testing.assert_close(warm, fresh, rtol=0, atol=1e-9)


def test_a_stale_guess_is_ignored():
    graph, lengths, receivers = _random_graph(7)
    options = {"n_nodes": 40, "max_neighbors": 8, "width": WIDTH, "ceiling": R_MAX + WIDTH}
    moved = dict(graph)
    moved["positions"] = graph["positions"] + 0.05 * torch.randn(
        graph["positions"].shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    new_lengths = edge_lengths(moved)
    stale = cap_thresholds(lengths, receivers, **options)
    fresh = cap_thresholds(new_lengths, receivers, **options)
    warm = cap_thresholds(new_lengths, receivers, guess=stale, **options)
    assert (stale - fresh).abs().max() > 1e-3  # the guess is far from the new roots
    torch.testing.assert_close(warm, fresh, rtol=0, atol=1e-9)


# --- a tiny MACE with the cap -------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain():
    return tiny_mace([1, 6, 8], max_ell=1, r_max=R_MAX)


def _capped(model, k):
    with quiet_model_construction():
        model = copy.deepcopy(model)
    model.radial_embedding = SmoothCapRadialEmbedding(
        model.radial_embedding, max_neighbors=k, width=WIDTH
    )
    return model


def _run(model, structures, *, cutoff=R_MAX + 2 * WIDTH, max_neighbors=None):
    graph = build_graph(structures, cutoff=cutoff, z_table=[1, 6, 8], max_neighbors=max_neighbors)
    data = dict(graph)
    out = model(data, compute_force=True)
    forces = out["forces"].detach().reshape(len(structures), -1, 3)
    return out["energy"].detach().numpy(), forces.numpy()


def _path(steps):
    """C at the origin; H at 1.1 Å; O and H swap places as C's 2nd/3rd neighbours at x = 0.302."""
    structures = []
    for x in steps:
        positions = [[0, 0, 0], [1.1, 0, 0], [0, 2.0 + x, 0], [0.1, 0, 2.3]]
        structures.append(Atoms("CHOH", positions=positions))
    return structures


def _max_jumps(energies, forces):
    return np.abs(np.diff(energies)).max(), np.abs(np.diff(forces, axis=0)).max()


def test_capped_energy_and_forces_are_continuous_where_neighbours_swap(plain):
    smooth = _capped(plain, 2)
    jumps = {}
    for h in (0.01, 0.0025):
        structures = _path(np.arange(0.25, 0.35 + h / 2, h))
        jumps["smooth", h] = _max_jumps(*_run(smooth, structures))
        jumps["hard", h] = _max_jumps(*_run(plain, structures, cutoff=R_MAX, max_neighbors=2))
    for kind in (0, 1):  # energy, forces
        assert jumps["smooth", 0.0025][kind] < jumps["smooth", 0.01][kind] / 3
        assert jumps["hard", 0.0025][kind] > 0.5 * jumps["hard", 0.01][kind]  # a real jump
        assert jumps["hard", 0.0025][kind] > 5 * jumps["smooth", 0.0025][kind]


def test_capped_forces_are_exact_gradients_with_partial_weights(plain):
    smooth = _capped(plain, 2)
    (atoms,) = _path([0.31])
    graph = build_graph(atoms, cutoff=R_MAX + 2 * WIDTH, z_table=[1, 6, 8])
    weights = smooth.radial_embedding(
        edge_lengths(graph)[:, None],
        graph["node_attrs"],
        graph["edge_index"],
        smooth.atomic_numbers,
    )[1]
    assert ((weights > 1e-3) & (weights < 1 - 1e-3)).sum() >= 2  # the cap acts on this structure
    delta, shifted = 1e-4, []
    for i in range(len(atoms)):
        for k in range(3):
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[i, k] += sign * delta
                shifted.append(moved)
    energies, _ = _run(smooth, shifted)
    numeric = -(energies[0::2] - energies[1::2]).reshape(len(atoms), 3) / (2 * delta)
    _, forces = _run(smooth, [atoms])
    np.testing.assert_allclose(forces[0], numeric, atol=1e-6)


def test_capped_model_is_rotation_invariant(plain):
    smooth = _capped(plain, 2)
    (atoms,) = _path([0.29])
    rotation = rotation_matrix(np.random.default_rng(4))
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ rotation.T
    energies, forces = _run(smooth, [atoms, rotated])
    assert energies[1] == pytest.approx(energies[0], abs=1e-10)
    np.testing.assert_allclose(forces[1], forces[0] @ rotation.T, atol=1e-10)


def test_cap_above_the_neighbour_count_leaves_the_model_unchanged(plain):
    structures = _path([0.1, 0.3])
    capped = _run(_capped(plain, 3), structures)
    uncapped = _run(plain, structures)
    assert np.array_equal(capped[0], uncapped[0]) and np.array_equal(capped[1], uncapped[1])


def test_pruned_graph_gives_the_same_energies_and_forces(plain):
    rng = np.random.default_rng(5)
    atoms = Atoms("C5H5O2", positions=rng.random((12, 3)) * 4.0, cell=np.eye(3) * 4.0, pbc=True)
    smooth = _capped(plain, 6)
    full = build_graph(atoms, cutoff=R_MAX + 2 * WIDTH, z_table=[1, 6, 8], min_distance=None)
    pruned = select_smooth_cap_edges(full, max_neighbors=6, width=WIDTH, cutoff=R_MAX)
    assert pruned["edge_index"].shape[1] < 0.6 * full["edge_index"].shape[1]
    outs = [smooth(dict(graph), compute_force=True) for graph in (full, pruned)]
    torch.testing.assert_close(outs[1]["energy"], outs[0]["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(outs[1]["forces"], outs[0]["forces"], rtol=0, atol=1e-10)
    # the pruned graph carries the thresholds; started from them the model gives the same result
    assert pruned["cap_threshold"].shape == (12,)
    with threshold_guess(pruned["cap_threshold"]):
        warm = smooth(dict(pruned), compute_force=True)
    torch.testing.assert_close(warm["energy"], outs[0]["energy"], rtol=0, atol=1e-10)
    torch.testing.assert_close(warm["forces"], outs[0]["forces"], rtol=0, atol=1e-10)
