"""Tabulated radial MLPs: close to the exact MLP, converging with the knot spacing, and forces
that are the exact gradient of the tabulated energy."""

from __future__ import annotations

import copy

import pytest
import torch

from macelerate.runtime.tabulated_radial import (
    EdgeFeatures,
    LengthRadialEmbedding,
    TabulatedRadialMLP,
)
from macelerate.testing import tiny_mace


def _tabulate(model: torch.nn.Module, n_knots: int) -> torch.nn.Module:
    model = copy.deepcopy(model)
    features = EdgeFeatures(model.radial_embedding)
    for block in model.interactions:
        block.conv_tp_weights = TabulatedRadialMLP(
            block.conv_tp_weights, features, r_min=0.5, r_max=float(model.r_max), n_knots=n_knots
        )
    model.radial_embedding = LengthRadialEmbedding(model.radial_embedding)
    return model


def _radial_error(model: torch.nn.Module, n_knots: int) -> float:
    tabulated = _tabulate(model, n_knots)
    r = torch.linspace(0.3, float(model.r_max) + 0.5, 997, dtype=torch.float64).unsqueeze(1)
    errors = []
    with torch.no_grad():
        features, _ = model.radial_embedding(r, None, None, None)
        for exact_block, table_block in zip(model.interactions, tabulated.interactions):
            exact = exact_block.conv_tp_weights(features)
            errors.append(float((table_block.conv_tp_weights(r) - exact).abs().max()))
    return max(errors)


def test_error_shrinks_with_the_spacing_and_is_exact_below_the_table():
    model = tiny_mace([1, 8], r_max=4.0)
    coarse, fine = _radial_error(model, 50), _radial_error(model, 400)
    assert fine < 1e-5
    assert fine < coarse / 100  # fourth order in the spacing: 8x finer -> ~4000x smaller
    tabulated = _tabulate(model, 50)
    r = torch.tensor([[0.3], [0.45]], dtype=torch.float64)  # below r_min: the exact MLP
    with torch.no_grad():
        features, _ = model.radial_embedding(r, None, None, None)
        exact = model.interactions[0].conv_tp_weights(features)
        torch.testing.assert_close(tabulated.interactions[0].conv_tp_weights(r), exact)


def test_zero_beyond_the_cutoff():
    model = tiny_mace([1, 8], r_max=4.0)
    tabulated = _tabulate(model, 100)
    r = torch.tensor([[4.0], [4.3], [7.0]], dtype=torch.float64)
    with torch.no_grad():
        out = tabulated.interactions[0].conv_tp_weights(r)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("n_knots", [40, 400])
def test_forces_are_the_gradient_of_the_tabulated_energy(ethanol, n_knots):
    from macelerate.models.loading import load
    from macelerate.testing import numeric_forces

    potential = load(_tabulate(tiny_mace([1, 6, 8], r_max=4.0), n_knots))
    analytic = potential.predict(ethanol).forces[[0, 3, 5]]
    numeric = numeric_forces(potential, ethanol, indices=[0, 3, 5], delta=1e-5)
    torch.testing.assert_close(
        torch.from_numpy(analytic), torch.from_numpy(numeric), rtol=1e-6, atol=1e-7
    )


def test_envelope_before_the_last_layer_equals_it_after():
    from macelerate.runtime.interaction import radial_weights

    model = tiny_mace([1, 6, 8], max_ell=1)
    r = torch.linspace(0.6, float(model.r_max) - 0.1, 41, dtype=torch.float64).unsqueeze(1)
    features, _ = model.radial_embedding(r, None, None, None)
    envelope = torch.rand(41, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mlp = model.interactions[0].conv_tp_weights
    table = _tabulate(model, 64).interactions[0].conv_tp_weights
    linear = torch.nn.Linear(features.shape[1], 5, dtype=torch.float64)  # no e3nn layers
    for module, inputs in ((mlp, features), (table, r), (linear, features)):
        expected = module(inputs) * envelope
        torch.testing.assert_close(radial_weights(module, inputs, envelope), expected,
                                   rtol=1e-12, atol=1e-12)  # fmt: skip
    assert torch.equal(radial_weights(mlp, features, None), mlp(features))


def test_the_output_table_is_the_hidden_table_through_the_last_layer():
    # Hermite interpolation is linear in the knot data: tabulating the outputs equals
    # tabulating the hidden features and applying the last layer, at every length
    model = tiny_mace([1, 8], r_max=4.0)
    table = _tabulate(model, 50).interactions[0].conv_tp_weights
    r = torch.linspace(0.5, 3.99, 301, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(table(r), table.hidden(r) @ table.last_weight,
                                   rtol=1e-12, atol=1e-12)  # fmt: skip


def test_weights_per_path_equal_the_split_weights():
    from macelerate.runtime.interaction import radial_weights

    model = tiny_mace([1, 6, 8], max_ell=1)
    r = torch.linspace(0.3, float(model.r_max) + 0.2, 29, dtype=torch.float64).unsqueeze(1)
    features, _ = model.radial_embedding(r, None, None, None)
    envelope = torch.rand(29, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mlp = model.interactions[0].conv_tp_weights
    table = _tabulate(model, 64).interactions[0].conv_tp_weights
    linear = torch.nn.Linear(features.shape[1], 5, dtype=torch.float64)
    for module, inputs in ((mlp, features), (table, r), (linear, features)):
        whole = radial_weights(module, inputs, envelope)
        widths = [2, 0, whole.shape[1] - 2]
        blocks = radial_weights(module, inputs, envelope, widths=widths)
        assert [b.shape[1] for b in blocks] == widths
        torch.testing.assert_close(torch.cat(blocks, dim=1), whole, rtol=1e-12, atol=1e-12)


def test_tabulate_radial_reports_the_error_it_measured(ethanol):
    from macelerate.models.loading import load
    from macelerate.transforms import tabulate_radial
    from macelerate.transforms.tabulate import FIRST_KNOTS, force_errors

    source = load(tiny_mace([1, 6, 8], r_max=4.0))
    bound = 1e-7
    tabulated, report = tabulate_radial(source, probe=[ethanol], max_force_error=bound)
    assert report.probe_structures == 1 and report.interactions == 2
    assert report.max_force_error is not None and report.max_force_error <= bound
    assert force_errors(source, tabulated, [ethanol])[0] == pytest.approx(report.max_force_error)
    assert report.n_knots >= FIRST_KNOTS
    if report.n_knots > FIRST_KNOTS:  # the search stopped at the first knot count that holds
        _, coarser = tabulate_radial(source, probe=[ethanol], knots=report.n_knots // 2)
        assert coarser.max_force_error is not None
        assert coarser.max_force_error > bound or coarser.hidden_error > 1e-6


def test_first_layer_sender_features_fold_into_per_element_tables(ethanol, monkeypatch):
    import macelerate.runtime.interaction as interaction
    from macelerate.models.loading import load

    potential = load(_tabulate(tiny_mace([1, 6, 8], r_max=4.0), 200))
    scales = []
    real = TabulatedRadialMLP.output_blocks

    def spy(self, widths=None, group_scales=None):
        if group_scales is not None:
            scales.append(group_scales)
        return real(self, widths, group_scales)

    monkeypatch.setattr(TabulatedRadialMLP, "output_blocks", spy)
    folded = potential.predict(ethanol)
    assert [tuple(s.shape) for s in scales] == [(3, 8 * 3)]  # first layer only: 3 elements
    monkeypatch.setattr(interaction, "_species_folding", lambda *args: None)
    plain = potential.predict(ethanol)
    assert len(scales) == 1
    assert folded.energy == pytest.approx(plain.energy, abs=1e-12)
    torch.testing.assert_close(
        torch.from_numpy(folded.forces), torch.from_numpy(plain.forces), rtol=0, atol=1e-12
    )


def test_table_blocks_are_cached_while_the_scales_keep_their_values():
    mlp = _tabulate(tiny_mace([1, 8], r_max=4.0), 50).interactions[0].conv_tp_weights
    out, rows = mlp.out_features, mlp.output_table.shape[0]
    scales = torch.rand(2, out, dtype=torch.float64)
    widths = [out - 5, 5]
    blocks = mlp.output_blocks(widths, scales)
    assert [b.shape for b in blocks] == [(2 * rows, out - 5), (2 * rows, 5)]
    assert all(b.is_contiguous() for b in blocks)
    torch.testing.assert_close(blocks[1][rows:], mlp.output_table[:, -5:] * scales[1, -5:])
    assert mlp.output_blocks(widths, scales.clone()) is blocks  # equal values: cached
    assert mlp.output_blocks(widths, scales * 2.0) is not blocks
    plain = mlp.output_blocks(widths)
    assert mlp.output_blocks(widths) is plain and plain[0].is_contiguous()
    r = torch.tensor([[1.0], [2.5], [0.3]], dtype=torch.float64)  # 0.3: below the table
    groups = torch.tensor([1, 0, 1])
    out = mlp(r, groups=groups, group_scales=scales)
    torch.testing.assert_close(out, mlp(r) * scales[groups], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="needs groups"):
        mlp(r, group_scales=scales)
