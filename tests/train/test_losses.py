"""Loss terms on hand-computed cases, Hessian rows on an analytic energy, and the EMA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from macelerate.train.data import Batch, HessianBlock
from macelerate.train.ema import ExponentialMovingAverage
from macelerate.train.losses import (
    LossWeights,
    compute_loss,
    confidence_targets,
    energy_loss,
    hessian_loss,
    hessian_rows_autograd,
    regression_loss,
    stress_loss,
)


def t(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_huber_and_mse_by_hand():
    prediction, target = t([0.0, 0.005, 0.03]), t([0.0, 0.0, 0.0])
    huber = regression_loss(prediction, target, huber_delta=0.01)
    # 0.5 x^2 inside the threshold, delta * (|x| - delta / 2) beyond it
    assert float(huber) == pytest.approx((0.5 * 0.005**2 + 0.01 * (0.03 - 0.005)) / 3, rel=1e-12)
    mse = regression_loss(prediction, target, huber_delta=None)
    assert float(mse) == pytest.approx((0.005**2 + 0.03**2) / 3, rel=1e-12)


def test_energy_loss_is_per_atom():
    loss = energy_loss(t([2.0, 9.0]), t([1.0, 3.0]), torch.tensor([2, 3]), huber_delta=None)
    assert float(loss) == pytest.approx((0.5**2 + 2.0**2) / 2, rel=1e-12)


def test_stress_loss_uses_only_masked_structures():
    stress, reference = torch.zeros(2, 3, 3, dtype=torch.float64), torch.zeros(2, 3, 3)
    reference = reference.double()
    reference[0] += 1.0  # structure 0 has no label: its mismatch must not count
    stress[1, 0, 0] = 0.3
    loss = stress_loss(stress, reference, torch.tensor([False, True]), huber_delta=None)
    assert float(loss) == pytest.approx(0.3**2 / 9, rel=1e-12)


@pytest.mark.parametrize("bins", [[0.1, 0.5], [0.0, 0.1, 0.5, 100.0]])
def test_confidence_targets_bin_the_force_error_norm(bins):
    reference = torch.zeros(3, 3, dtype=torch.float64)
    forces = t([[0.03, 0.04, 0.0], [0.0, 0.3, 0.0], [2.0, 0.0, 0.0]])  # norms 0.05, 0.3, 2.0
    targets = confidence_targets(forces, reference, t(bins), n_bins=3)
    assert targets.tolist() == [0, 1, 2]


def test_confidence_bins_must_fit_the_logits():
    with pytest.raises(ValueError, match="edges for 4 logits"):
        confidence_targets(torch.zeros(2, 3), torch.zeros(2, 3), t([0.1, 0.5]), n_bins=4)


def _batch(**labels) -> Batch:
    graph = {"ptr": torch.tensor([0, 2, 3])}
    fields = {"energy": None, "forces": None, "stress": None, "stress_mask": None}
    return Batch(graph=graph, **{**fields, **labels})


def test_compute_loss_weights_and_skips_terms():
    outputs = {
        "energy": t([1.0, 2.0]),
        "forces": t([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.2]]),
        "confidence_logits": t([[2.0, 0.0], [0.0, 1.0], [0.5, 0.5]]),
    }
    batch = _batch(energy=t([0.0, 2.0]), forces=torch.zeros(3, 3, dtype=torch.float64))
    weights = LossWeights(energy=2.0, forces=10.0, confidence=0.5, huber_delta=None)
    terms = compute_loss(outputs, batch, weights, confidence_bins=t([0.15]))
    assert float(terms["energy"]) == pytest.approx((0.5**2 + 0.0) / 2)
    assert float(terms["forces"]) == pytest.approx((0.1**2 + 0.2**2) / 9)
    expected_ce = F.cross_entropy(outputs["confidence_logits"], torch.tensor([0, 0, 1]))
    assert float(terms["confidence"]) == pytest.approx(float(expected_ce))
    assert "stress" not in terms and "hessian" not in terms and "equigrad" not in terms
    total = 2.0 * terms["energy"] + 10.0 * terms["forces"] + 0.5 * terms["confidence"]
    assert float(terms["total"]) == pytest.approx(float(total), rel=1e-12)


def test_compute_loss_without_any_term_explains():
    with pytest.raises(ValueError, match="no loss term applies"):
        compute_loss({"energy": t([1.0, 2.0])}, _batch(), LossWeights())


def test_loss_weights_reject_nonsense():
    with pytest.raises(ValueError, match="forces"):
        LossWeights(forces=-1.0)
    with pytest.raises(ValueError, match="huber_delta"):
        LossWeights(huber_delta=0.0)


def _quadratic_forces(a: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Forces of E = 0.5 x^T A x (so the Hessian is A), with their graph kept."""
    flat = positions.reshape(-1)
    energy = 0.5 * flat @ a @ flat
    (gradient,) = torch.autograd.grad(energy, positions, create_graph=True)
    return -gradient


def test_hessian_rows_of_a_quadratic_energy_in_a_batch():
    # two non-interacting "structures" of 2 and 1 atoms: A is block diagonal
    generator = torch.Generator().manual_seed(0)
    blocks_a = [torch.randn(6, 6, generator=generator, dtype=torch.float64) for _ in range(2)]
    a1, a2 = (b + b.T for b in blocks_a)
    a = torch.block_diag(a1, a2[:3, :3])
    positions = torch.randn(3, 3, dtype=torch.float64, generator=generator, requires_grad=True)
    forces = _quadratic_forces(a, positions)
    blocks = [
        HessianBlock(0, torch.tensor([3, 4, 5]), None, 0, 2),  # atom 1 of structure 0
        HessianBlock(1, torch.tensor([6, 7, 8]), None, 2, 1),  # atom 0 of structure 1
    ]
    rows = hessian_rows_autograd(forces, positions, blocks, create_graph=False)
    torch.testing.assert_close(rows[0], a1[3:6], rtol=0, atol=1e-12)
    torch.testing.assert_close(rows[1], a2[:3, :3], rtol=0, atol=1e-12)


def test_hessian_loss_trains_the_curvature():
    stiffness = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    positions = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    forces = _quadratic_forces(stiffness * torch.eye(6, dtype=torch.float64), positions)
    target = 3.0 * torch.eye(6, dtype=torch.float64)[:3]  # rows of atom 0 for stiffness 3
    block = HessianBlock(0, torch.tensor([0, 1, 2]), target, 0, 2)
    loss = hessian_loss(forces, positions, [block], huber_delta=None)
    assert float(loss.detach()) == pytest.approx(3 * 1.0 / 18)  # three diagonal entries off by 1
    (gradient,) = torch.autograd.grad(loss, stiffness)
    assert float(gradient) == pytest.approx(2 * 3 * (2.0 - 3.0) / 18)


def test_ema_averages_with_warmup_and_restores():
    module = torch.nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        module.weight.fill_(0.0)
    ema = ExponentialMovingAverage(module, decay=0.99)
    expected = 0.0
    for step, value in enumerate([1.0, 2.0, 3.0]):
        with torch.no_grad():
            module.weight.fill_(value)
        decay = min(0.99, (1 + step) / (10 + step))
        expected = decay * expected + (1 - decay) * value
        ema.update(module)
    with ema.averaged(module):
        assert float(module.weight.detach()) == pytest.approx(expected, rel=1e-12)
    assert float(module.weight.detach()) == 3.0  # own weights back after the block
    copy = ExponentialMovingAverage(module, decay=0.5)
    copy.load_state_dict(ema.state_dict())
    assert copy.num_updates == 3 and copy.decay == 0.99
    assert float(copy.shadow["weight"]) == pytest.approx(expected, rel=1e-12)


def test_hessian_rows_refuse_forces_detached_from_positions():
    positions = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    weight = torch.ones((), dtype=torch.float64, requires_grad=True)
    forces = weight * torch.ones(2, 3, dtype=torch.float64)  # no path back to positions
    block = HessianBlock(0, torch.tensor([0, 1, 2]), None, 0, 2)
    with pytest.raises(ValueError, match="detach"):
        hessian_rows_autograd(forces, positions, [block], create_graph=True)
