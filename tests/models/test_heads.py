"""Direct force/stress heads are equivariant; the confidence head never trains the backbone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate._mace import import_mace
from macelerate._torch_state import default_dtype
from macelerate.models.heads import (
    ConfidenceHead,
    DirectForceHead,
    DirectStressHead,
    expected_force_error,
    force_error_bins,
)
from macelerate.testing import rotation_matrix

IRREPS = "4x0e+4x1o+4x2e+4x0e"  # two layers: (0e, 1o, 2e) then scalars only, as mace concatenates
IRREPS_L1 = "4x0e+4x1o+4x0e"  # a max_L = 1 backbone: no 2e features


def _irreps(text):
    import_mace()
    from e3nn import o3

    return o3.Irreps(text)


def _rotated(features, irreps, rotation):
    """Node features [n, D] transformed by the e3nn representation of a 3x3 (improper) rotation."""
    matrix = torch.from_numpy(rotation)
    return features @ _irreps(irreps).D_from_matrix(matrix).T


def _orthogonal(seed, *, improper=False):
    rotation = rotation_matrix(np.random.default_rng(seed))
    return -rotation if improper else rotation


@pytest.fixture(scope="module")
def heads():
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        return {
            "force": DirectForceHead(IRREPS, hidden=8),
            "stress": DirectStressHead(IRREPS, hidden=8),
            "stress_l1": DirectStressHead(IRREPS_L1, hidden=8),
        }


def _inputs(irreps, n_atoms=7, seed=1):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(n_atoms, _irreps(irreps).dim, generator=generator, dtype=torch.float64)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    cell = torch.cat([torch.eye(3) * 5.0, torch.diag(torch.tensor([4.0, 5.0, 6.0]))]).double()
    return features, batch, cell


@pytest.mark.parametrize("improper", [False, True])
def test_direct_forces_rotate_with_the_structure(heads, improper):
    features, batch, _ = _inputs(IRREPS)
    rotation = _orthogonal(2, improper=improper)
    forces = heads["force"](features, batch, 2)
    turned = heads["force"](_rotated(features, IRREPS, rotation), batch, 2)
    expected = forces @ torch.from_numpy(rotation).T
    torch.testing.assert_close(turned, expected, rtol=0, atol=1e-12)
    assert forces.abs().max() > 1e-3  # not trivially zero


def test_direct_forces_have_no_net_force_per_structure(heads):
    features, batch, _ = _inputs(IRREPS)
    forces = heads["force"](features, batch, 2)
    totals = torch.zeros(2, 3, dtype=forces.dtype).index_add_(0, batch, forces)
    torch.testing.assert_close(totals, torch.zeros_like(totals), rtol=0, atol=1e-12)


def test_direct_force_head_needs_vector_features():
    with pytest.raises(ValueError, match="1o"):
        DirectForceHead("4x0e+4x0e")


@pytest.mark.parametrize("name,irreps", [("stress", IRREPS), ("stress_l1", IRREPS_L1)])
@pytest.mark.parametrize("improper", [False, True])
def test_direct_stress_is_symmetric_and_equivariant(heads, name, irreps, improper):
    features, batch, cell = _inputs(irreps)
    rotation = torch.from_numpy(_orthogonal(3, improper=improper))
    stress = heads[name](features, batch, cell, 2)
    turned = heads[name](_rotated(features, irreps, rotation.numpy()), batch, cell, 2)
    torch.testing.assert_close(stress, stress.transpose(1, 2), rtol=0, atol=1e-14)
    torch.testing.assert_close(turned, rotation @ stress @ rotation.T, rtol=0, atol=1e-12)
    traceless = stress - torch.eye(3) * stress.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None]
    assert traceless.abs().max() > 1e-4  # anisotropic, also without 2e input features


def test_direct_stress_is_divided_by_volume_and_zero_for_molecules(heads):
    features, batch, cell = _inputs(IRREPS)
    stress = heads["stress"](features, batch, cell, 2)
    torch.testing.assert_close(heads["stress"](features, batch, 2 * cell, 2), stress / 8)
    molecule_cell = cell.clone()
    molecule_cell[3:] = 0.0
    assert torch.all(heads["stress"](features, batch, molecule_cell, 2)[1] == 0)


def test_confidence_head_reads_detached_scalars_only():
    torch.manual_seed(0)
    with default_dtype(torch.float64):
        backbone = torch.nn.Linear(5, _irreps(IRREPS).dim)
        head = ConfidenceHead(IRREPS, n_bins=10, max_error=0.5, hidden=8)
    logits = head(backbone(torch.randn(6, 5, dtype=torch.float64)))
    assert logits.shape == (6, 10)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 10, (6,))).backward()
    assert backbone.weight.grad is None and backbone.bias.grad is None
    assert all(p.grad is not None for p in head.parameters())
    assert head.scalar_columns.numel() == 8  # 4x0e + 4x0e


def test_error_bins_and_expected_error():
    edges = torch.linspace(0.0, 1.0, 51, dtype=torch.float64)
    errors = torch.tensor([0.0, 0.019, 0.5, 0.999, 5.0], dtype=torch.float64)
    assert force_error_bins(errors, edges).tolist() == [0, 0, 25, 49, 49]
    sure = torch.full((2, 50), -1e4, dtype=torch.float64)
    sure[0, 0], sure[1, 49] = 0.0, 0.0
    torch.testing.assert_close(
        expected_force_error(sure, edges), torch.tensor([0.01, 0.99]).double()
    )
    flat = expected_force_error(torch.zeros(1, 50, dtype=torch.float64), edges)
    assert flat.item() == pytest.approx(0.5)
