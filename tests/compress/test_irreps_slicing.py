"""Index maths of irreps-block pruning, checked block by block against e3nn's own weight views
and by evaluating e3nn modules (old with removed inputs zeroed vs new, pruned module)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate._mace import import_mace, quiet_model_construction
from macelerate.compress.irreps_slicing import (
    basis_map,
    coupling_components,
    feature_index,
    flat_weight_channels,
    flat_weight_degrees,
    flat_weight_index,
    restrict_u,
    select_by_ir,
    select_tp_outputs,
)
from macelerate.compress.macs import contraction_macs, mlp_macs, path_macs
from macelerate.mace.irreps import Path, irreps_entries, irreps_string, paths_from_e3nn

import_mace()
from e3nn import o3  # noqa: E402


def _views(module, weight=None):
    """(instruction, view) per weighted path; e3nn yields (index, instruction, view)."""
    return [(ins, view) for _, ins, view in module.weight_views(weight, yield_instruction=True)]


def _slice(old, new, selections, weight=None):
    index, scale = flat_weight_index(paths_from_e3nn(old), paths_from_e3nn(new), selections)
    source = (old.weight if weight is None else weight).detach()
    return (source.double()[..., index] * scale).to(source.dtype)


def _zero_removed(x: torch.Tensor, irreps, selection) -> torch.Tensor:
    """Features ``x`` with every component the selection drops set to zero."""
    keep = torch.zeros(x.shape[-1], dtype=torch.bool)
    keep[feature_index(irreps_entries(irreps), selection)] = True
    return x * keep


def test_irreps_entries_and_select_by_ir():
    old = irreps_entries("4x0e+4x1o+4x2e")
    assert old == ((4, 0, 1), (4, 1, -1), (4, 2, 1))
    assert select_by_ir(old, irreps_entries("2x0e+2x1o"), [1, 3]) == ((0, (1, 3)), (1, (1, 3)))
    assert select_by_ir(irreps_entries("0e+1o"), irreps_entries("1o")) == ((1, (0,)),)
    with pytest.raises(ValueError, match="occurs 0 times"):
        select_by_ir(old, irreps_entries("2x1e"), [0, 1])
    with pytest.raises(ValueError, match="do not fit"):
        select_by_ir(old, irreps_entries("2x0e"), [0, 1, 2])


def test_feature_index_by_hand():
    irreps = ((2, 0, 1), (2, 1, -1))  # components: [c0, c1, c0.m0-2, c1.m0-2]
    sel = select_by_ir(irreps, ((1, 0, 1), (1, 1, -1)), [1])
    assert feature_index(irreps, sel).tolist() == [1, 5, 6, 7]
    reordered = select_by_ir(irreps, ((2, 1, -1),), [1, 0])
    assert feature_index(irreps, reordered).tolist() == [5, 6, 7, 2, 3, 4]


def test_paths_match_e3nn_weight_views():
    with quiet_model_construction():
        modules = [
            o3.Linear("3x0e+3x1o", "2x0e+2x1o"),
            o3.FullyConnectedTensorProduct("3x0e+3x1o", "2x0e", "4x0e+4x1o"),
        ]
    for module in modules:
        paths, offset = paths_from_e3nn(module), 0
        for path, (ins, view) in zip(paths, _views(module), strict=True):
            assert path.shape == tuple(view.shape) and path.weight == ins.path_weight
            flat = module.weight.detach()[offset : offset + path.numel]
            assert torch.equal(flat.reshape(path.shape), view.detach())
            offset += path.numel
        assert offset == module.weight.numel()


def test_linear_slicing_block_by_block_and_as_a_function():
    torch.manual_seed(0)
    old_in, old_out = irreps_entries("4x0e+4x1o+4x2e"), irreps_entries("3x0e+3x1o+3x2e")
    new_in, new_out = irreps_entries("2x0e+2x1o"), irreps_entries("2x0e+2x1o")
    keep_in, keep_out = [0, 3], [2, 1]
    with quiet_model_construction():
        old = o3.Linear(irreps_string(old_in), irreps_string(old_out))
        new = o3.Linear(irreps_string(new_in), irreps_string(new_out))
    sel = [select_by_ir(old_in, new_in, keep_in), select_by_ir(old_out, new_out, keep_out)]
    with torch.no_grad():
        new.weight.copy_(_slice(old, new, sel))
    old_views = {(i.i_in, i.i_out): (i, v) for i, v in _views(old)}
    for ins, view in _views(new):  # block by block: sub-block of the old path, rescaled
        old_ins, old_view = old_views[(ins.i_in, ins.i_out)]
        expected = old_view[np.ix_(keep_in, keep_out)] * old_ins.path_weight / ins.path_weight
        torch.testing.assert_close(view, expected, rtol=0, atol=1e-6)
    x = torch.randn(5, o3.Irreps("4x0e+4x1o+4x2e").dim)
    reference = old(_zero_removed(x, old_in, sel[0]))[:, feature_index(old_out, sel[1])]
    pruned = new(x[:, feature_index(old_in, sel[0])])
    torch.testing.assert_close(pruned, reference, rtol=1e-5, atol=1e-6)


def test_fully_connected_tp_slicing_matches_zeroed_inputs():
    torch.manual_seed(1)
    old_in, attrs, old_out = (irreps_entries(s) for s in ("4x0e+4x1o", "3x0e", "4x0e+4x1o"))
    new_in, new_out = irreps_entries("3x0e+3x1o"), irreps_entries("3x0e")
    with quiet_model_construction():
        old = o3.FullyConnectedTensorProduct(*map(irreps_string, (old_in, attrs, old_out)))
        new = o3.FullyConnectedTensorProduct(*map(irreps_string, (new_in, attrs, new_out)))
    sel = [
        select_by_ir(old_in, new_in, [0, 1, 3]),
        select_by_ir(attrs, attrs),
        select_by_ir(old_out, new_out, [3, 0, 2]),
    ]
    with torch.no_grad():
        new.weight.copy_(_slice(old, new, sel))
    x, y = torch.randn(6, 16), torch.eye(3)[torch.tensor([0, 1, 2, 1, 0, 2])]
    reference = old(_zero_removed(x, old_in, sel[0]), y)[:, feature_index(old_out, sel[2])]
    torch.testing.assert_close(new(x[:, feature_index(old_in, sel[0])], y), reference)


def _conv(node, sh, target):
    from mace.modules.irreps_tools import tp_out_irreps_with_instructions

    mid, instructions = tp_out_irreps_with_instructions(
        o3.Irreps(node), o3.Irreps(sh), o3.Irreps(target)
    )
    with quiet_model_construction():
        return o3.TensorProduct(
            node, sh, mid, instructions, shared_weights=False, internal_weights=False
        )


def test_edge_tp_radial_columns_and_outputs():
    """uvu paths: new radial columns are the old ones of the kept (channel, path); paths on a
    removed edge-attribute order vanish; outputs equal the old ones with those paths zeroed."""
    torch.manual_seed(2)
    old, new = (
        _conv("4x0e+4x1o", "0e+1o+2e", "4x0e+4x1o+4x2e"),
        _conv("2x0e+2x1o", "0e+1o", "2x0e+2x1o"),
    )
    node_old, node_new = irreps_entries(old.irreps_in1), irreps_entries(new.irreps_in1)
    sel1 = select_by_ir(node_old, node_new, [1, 2])
    sel2 = select_by_ir(irreps_entries(old.irreps_in2), irreps_entries(new.irreps_in2))
    mid_old, mid_new = irreps_entries(old.irreps_out), irreps_entries(new.irreps_out)
    sel_mid = select_tp_outputs(
        paths_from_e3nn(old), paths_from_e3nn(new), mid_old, mid_new, [sel1, sel2]
    )
    radial = torch.randn(7, old.weight_numel)  # [hidden, weight_numel] last radial layer
    new_radial = _slice(old, new, [sel1, sel2, sel_mid], weight=radial)
    zeroed = radial.clone()
    for ins, view in _views(old, zeroed):
        if old.irreps_in2[ins.i_in2].ir.l > 1:
            view.zero_()
    h = torch.randn(9, 7)  # radial hidden activations of 9 edges
    x, y = (
        torch.randn(9, old.irreps_in1.dim),
        o3.spherical_harmonics("0e+1o+2e", torch.randn(9, 3), True),
    )
    reference = old(_zero_removed(x, node_old, sel1), y, h @ zeroed)[
        :, feature_index(mid_old, sel_mid)
    ]
    pruned = new(x[:, feature_index(node_old, sel1)], y[:, :4], h @ new_radial)
    torch.testing.assert_close(pruned, reference)


def test_flat_weight_channels_and_degrees_by_hand():
    paths = [Path((0, 1), (0, 1), (2, 3), 1.0), Path((1, 2), (0, 1), (1, 2), 1.0)]
    assert flat_weight_channels(paths, 0).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]
    assert flat_weight_channels(paths, 1).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    uvu = [Path((0, 0, 0), (0, 1), (2, 1), 1.0)]
    assert flat_weight_channels(uvu, 2).tolist() == [-1, -1]
    irreps = ((2, 0, 1), (1, 1, -1), (2, 2, 1))
    assert flat_weight_degrees(paths, 1, irreps).tolist() == [1] * 6 + [2] * 2


def test_flat_weight_index_refuses_new_paths():
    old = [Path((0, 0), (0, 1), (2, 2), 1.0)]
    new = [Path((0, 1), (0, 1), (2, 2), 1.0)]
    sel = [((0, (0, 1)),), ((0, (0, 1)), (1, (0, 1)))]
    with pytest.raises(ValueError, match="no old path"):
        flat_weight_index(old, new, sel)


def _polynomial(u: torch.Tensor, w: torch.Tensor, x: torch.Tensor, nu: int) -> torch.Tensor:
    """sum_{p, i..} U[(m,) i_1..i_nu, p] w_p x_i1 ... x_inu."""
    t = u @ w
    for _ in range(nu):
        t = t @ x
    return t


@pytest.mark.parametrize("out", ["0e", "1o"])
def test_u_basis_map_is_exact_on_kept_components(out):
    """Contraction sum_nu U_nu w_nu x^nu with x's L=2 part removed equals the new basis."""
    from mace.tools.cg import U_matrix_real

    old_c, new_c = irreps_entries("0e+1o+2e"), irreps_entries("0e+1o")
    comps = coupling_components(old_c, select_by_ir(old_c, new_c))
    assert comps.tolist() == [0, 1, 2, 3]
    x = torch.randn(4, dtype=torch.float64)
    x_old = torch.cat([x, torch.zeros(5, dtype=torch.float64)])
    for nu in (1, 2, 3):
        u_old, u_new = (
            U_matrix_real(o3.Irreps(c), o3.Irreps(out), nu, dtype=torch.float64)[-1]
            for c in ("0e+1o+2e", "0e+1o")
        )
        xmap, residual = basis_map(restrict_u(u_old, comps, nu=nu), u_new)
        assert residual < 1e-12
        w_old = torch.randn(u_old.shape[-1], dtype=torch.float64)

        torch.testing.assert_close(
            _polynomial(u_new, xmap @ w_old, x, nu), _polynomial(u_old, w_old, x_old, nu)
        )


def test_mac_estimates_by_hand():
    assert path_macs(Path((0, 0), (0, 1), (4, 3), 1.0), [3, 3], linear=True) == 36
    uvu = Path((1, 2, 3), (0, 1), (4, 1), 1.0)
    assert path_macs(uvu, [3, 5, 3], linear=False) == 4 * 45 + 4 * 3
    assert mlp_macs([8, 16, 16, 24]) == 8 * 16 + 16 * 16 + 16 * 24
    assert (
        contraction_macs(channels=2, dim_out=1, num_ell=4, params={1: 1, 2: 3})
        == 2 * 4 * 2 + 2 * 16 * 4
    )
