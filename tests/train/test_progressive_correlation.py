"""Progressive correlation order: growth keeps the function, stages train, bad schedules fail."""

from __future__ import annotations

import pytest
import torch
from ase.build import molecule

from macelerate import load
from macelerate.models.student import StudentConfig, build_student
from macelerate.testing import tiny_mace
from macelerate.train.errors import TrainConfigError
from macelerate.train.loop import TrainConfig
from macelerate.train.progressive_correlation import (
    correlation_schedule,
    grow_correlation,
    progressive_distill,
)
from tests.train import ethanols

BASE = {
    "atomic_numbers": [1, 6, 8],
    "atomic_energies": [-1.0, -2.0, -3.0],
    "channels": 8,
    "max_L": 1,
    "max_ell": 2,
    "r_max": 3.5,
    "radial_mlp": [8],
    "max_neighbors": 5,
    "smooth_cap": True,
}


def _outputs(student, atoms):
    out = student(student.build_graph([atoms]))
    return out["energy"].detach(), out["forces"].detach()


@pytest.mark.parametrize("path", [[3], [2, 3]])
def test_growing_the_order_keeps_the_function_and_trains_the_new_orders(path):
    torch.manual_seed(0)
    small = build_student({**BASE, "correlation": 1})
    before = {k: v.clone() for k, v in small.state_dict().items()}
    grown = small
    for order in path:
        grown, report = grow_correlation(grown, order)
    assert grown.config.correlation == 3 and report["correlation_after"] == 3
    assert report["parameters_after"] > report["parameters_before"]
    ethanol = molecule("CH3CH2OH")
    for got, expected in zip(_outputs(grown, ethanol), _outputs(small, ethanol)):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    assert all(torch.equal(before[k], v) for k, v in small.state_dict().items())  # unchanged
    contraction = grown.backbone.products[0].symmetric_contractions.contractions[0]
    assert not contraction.weights_max.detach().any()  # order 3 starts at zero ...
    graph = grown.build_graph([ethanol])
    grown(graph, compute_force=False)["energy"].sum().backward()
    assert contraction.weights_max.grad.abs().max() > 0  # ... and is trained


def test_growth_and_schedules_refuse_what_they_cannot_do():
    student = build_student({**BASE, "correlation": 2})
    with pytest.raises(TrainConfigError, match="higher order"):
        grow_correlation(student, 2)
    hybrid = build_student({**BASE, "max_L": 0, "correlation": 1, "layers": ["mace", "attention"]})
    with pytest.raises(TrainConfigError, match="all mace"):
        grow_correlation(hybrid, 2)
    with pytest.raises(TrainConfigError, match="one step count"):
        correlation_schedule(3, [10, 10])
    assert [s.correlation for s in correlation_schedule(2, [5, 7])] == [1, 2]


def test_progressive_distill_trains_every_order_and_keeps_stage_states(tmp_path):
    teacher = load(tiny_mace([1, 6, 8], seed=4), dtype="float64")
    config = StudentConfig(**{**BASE, "correlation": 2})
    train_config = TrainConfig(
        batch_size=2, lr=5e-3, progress=False, checkpoint_path=str(tmp_path / "state.pt")
    )
    student, report, summary = progressive_distill(
        teacher, ethanols(6), student=config, stages=correlation_schedule(2, [2, 3]),
        config=train_config,
    )  # fmt: skip
    assert student.config.correlation == 2 and report.steps == 3
    assert [s["correlation"] for s in summary["stages"]] == [1, 2]
    assert [s["trained_steps"] for s in summary["stages"]] == [2, 3]
    assert summary["stages"][0]["parameters"] < summary["stages"][1]["parameters"]
    assert (tmp_path / "state.pt.stage1").is_file() and (tmp_path / "state.pt.stage2").is_file()
    with pytest.raises(TrainConfigError, match="end at the student's correlation 2"):
        progressive_distill(teacher, ethanols(6), student=config,
                            stages=correlation_schedule(1, [2]), config=train_config)  # fmt: skip
