"""The training loop: learning, exact resume, export round trip, contract modules, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from macelerate import load
from macelerate.data.labels import LabelKeys
from macelerate.errors import DataFileError, UnknownElementError
from macelerate.evaluate import evaluate
from macelerate.graph.batch import build_graph
from macelerate.mace.config import describe_mace_model, rebuild_mace_model
from macelerate.runtime.fused_conv import FusedEdgeTensorProduct
from macelerate.testing import tiny_mace
from macelerate.train.data import (
    LabelledData,
    StructureLabels,
    collate,
    mix_labels,
    model_edge_selection,
    model_graph_options,
)
from macelerate.train.export import unfused_template
from macelerate.train.loop import TrainConfig, train
from macelerate.train.losses import LossWeights
from macelerate.train.state import TrainStateError
from macelerate.train.teacher import label_structures
from tests.train import ethanols, silicon_cells

ELEMENTS = [1, 6, 8, 14]
QUIET = {"progress": False}


@pytest.fixture(scope="module")
def teacher():
    return load(tiny_mace(ELEMENTS, seed=1), dtype="float64")


@pytest.fixture(scope="module")
def student():
    return tiny_mace(ELEMENTS, seed=2)


@pytest.fixture(scope="module")
def labelled(teacher):
    return label_structures(teacher, ethanols(10))


def _options(model) -> dict:
    return {"cutoff": float(model.r_max), "z_table": ELEMENTS}


def test_collate_equals_one_build_graph_call():
    structures = [ethanols(1)[0], silicon_cells(1)[0], ethanols(1, seed=1)[0]]
    single = [build_graph(atoms, cutoff=4.0, z_table=ELEMENTS) for atoms in structures]
    batched = build_graph(structures, cutoff=4.0, z_table=ELEMENTS)
    collated = collate(single)
    assert set(collated) == set(batched)
    for key, value in batched.items():
        torch.testing.assert_close(collated[key], value, rtol=0, atol=0)


def test_collate_keeps_the_smooth_cap_thresholds():
    from macelerate.graph.smooth_cap import select_smooth_cap_edges

    structures = [ethanols(1)[0], silicon_cells(1)[0]]
    options = {"max_neighbors": 3, "width": 0.2, "cutoff": 3.6}
    single = [
        select_smooth_cap_edges(build_graph(a, cutoff=4.0, z_table=ELEMENTS), **options)
        for a in structures
    ]
    batched = select_smooth_cap_edges(build_graph(structures, cutoff=4.0, z_table=ELEMENTS),
                                      **options)  # fmt: skip
    collated = collate(single)
    torch.testing.assert_close(collated["cap_threshold"], batched["cap_threshold"], rtol=0,
                               atol=1e-12)  # fmt: skip
    assert (batched["cap_threshold"] < 3.8).any()  # the cap acts somewhere


def test_missing_label_names_the_available_keys(student):
    atoms = ethanols(1)[0]
    atoms.info["REF_energy"] = -1.0
    with pytest.raises(DataFileError, match="no 'energy' label.*REF_energy"):
        LabelledData([atoms], keys=LabelKeys(forces=None), graph_options=_options(student))


def test_unknown_element_is_reported_before_training(student):
    iron = Atoms("Fe2", positions=[[0, 0, 0], [0, 0, 2.0]])
    iron.info["energy"], iron.arrays["forces"] = -1.0, np.zeros((2, 3))
    with pytest.raises(UnknownElementError, match="structure 0 contains Fe"):
        train(student, [iron, iron], config=TrainConfig(**QUIET))


def test_split_is_seeded_and_disjoint(labelled, student):
    data = LabelledData(labelled, keys=LabelKeys(), graph_options=_options(student))
    first, val = data.split(0.3, seed=4)
    again, _ = data.split(0.3, seed=4)
    assert len(first) == 7 and len(val) == 3
    assert [g["positions"].sum() for g in first.graphs] == [
        g["positions"].sum() for g in again.graphs
    ]
    positions = {float(g["positions"].sum()) for g in first.graphs}
    assert not positions & {float(g["positions"].sum()) for g in val.graphs}


def test_training_reduces_the_error_and_leaves_the_model_alone(student, labelled):
    before_state = {k: v.clone() for k, v in student.state_dict().items()}
    train_set, val_set = labelled[:8], labelled[8:]
    config = TrainConfig(epochs=4, batch_size=2, lr=1e-2, **QUIET)
    trained, report = train(student, train_set, config=config, val_structures=val_set)
    unfused = {"fuse_message_passing": False}
    before = evaluate(load(student, **unfused), val_set, keys=LabelKeys()).force_rmse
    after = evaluate(load(trained, **unfused), val_set, keys=LabelKeys()).force_rmse
    assert after < 0.7 * before
    assert report.history[-1]["val_forces_rmse"] == pytest.approx(after, rel=1e-6)
    assert report.history[-1]["train_loss"] < report.history[0]["train_loss"]
    assert len(report.history) == 4 and report.steps == 16 and report.fused_blocks == 2
    for key, value in student.state_dict().items():
        assert torch.equal(value, before_state[key])


def _resume_config(tmp_path, **changes) -> TrainConfig:
    options = {"epochs": 2, "batch_size": 2, "lr": 5e-3, "seed": 1, **QUIET}
    options["checkpoint_path"] = str(tmp_path / "state.pt")
    return TrainConfig(**{**options, **changes})


@pytest.fixture(scope="module")
def full_run(student, labelled, tmp_path_factory):
    folder = tmp_path_factory.mktemp("full")
    config = _resume_config(folder)
    return (*train(student, labelled[:6], config=config, val_structures=labelled[6:8]), folder)


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


@pytest.mark.parametrize("kill_at", [3, 4])  # 3 steps per epoch: at its end, and inside epoch 2
def test_resume_continues_exactly(student, labelled, full_run, tmp_path, kill_at):
    expected, expected_report, _ = full_run
    killed = _resume_config(tmp_path, max_steps=kill_at)
    _, partial = train(student, labelled[:6], config=killed, val_structures=labelled[6:8])
    assert partial.stopped_at_max_steps and partial.steps == kill_at
    resumed_config = _resume_config(tmp_path, resume=True)
    resumed, report = train(
        student, labelled[:6], config=resumed_config, val_structures=labelled[6:8]
    )
    assert report.resumed_from_step == kill_at and report.steps == 6
    for (name, a), (_, b) in zip(expected.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=name)
    assert _without_seconds(report.history) == _without_seconds(expected_report.history)


def test_resume_refuses_other_settings_or_data(student, labelled, full_run):
    folder = full_run[2]
    with pytest.raises(TrainStateError, match="lr"):
        config = _resume_config(folder, resume=True, lr=1e-3)
        train(student, labelled[:6], config=config, val_structures=labelled[6:8])
    with pytest.raises(TrainStateError, match="different training data"):
        config = _resume_config(folder, resume=True)
        train(student, labelled[1:7], config=config, val_structures=labelled[6:8])


def test_exported_model_is_unfused_and_equals_the_trained_one(full_run, labelled):
    exported, report, _ = full_run
    assert report.export_max_energy_diff < 1e-10 and report.export_max_force_diff < 1e-10
    assert not any(isinstance(m, FusedEdgeTensorProduct) for m in exported.modules())
    assert not any("coefficients_" in key for key in exported.state_dict())
    rebuilt = rebuild_mace_model(describe_mace_model(exported), exported.state_dict())
    a = load(exported).predict(labelled[:3])  # fused again for inference
    b = load(rebuilt, fuse_message_passing=False).predict(labelled[:3])
    np.testing.assert_allclose(a.energy, b.energy, atol=1e-10)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-10)


def test_unfused_template_of_a_fused_model(teacher, labelled):
    template = unfused_template(teacher.model)  # Potential.model runs fused convolutions
    assert not any(isinstance(m, FusedEdgeTensorProduct) for m in template.modules())
    a = teacher.predict(labelled[:2])
    b = load(template, fuse_message_passing=False).predict(labelled[:2])
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-12)


class ConfidenceStudent(torch.nn.Module):
    """A module following the trainable-model contract: mace backbone + confidence head + cap."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        width = 8 * 2  # scalar node features of both layers (8 channels each)
        self.head = torch.nn.Linear(width, 3, dtype=torch.float64)
        self.register_buffer("confidence_bins", torch.tensor([0.05, 0.2], dtype=torch.float64))
        self.r_max, self.atomic_numbers = backbone.r_max, backbone.atomic_numbers

    def graph_options(self) -> dict:
        return {"max_neighbors": 4}

    def forward(self, graph, training=False, compute_force=True, compute_stress=False):
        out = self.backbone(
            graph, training=training, compute_force=compute_force, compute_stress=compute_stress
        )
        scalars = torch.cat([out["node_feats"][:, :8], out["node_feats"][:, 32:40]], dim=1)
        return {**out, "confidence_logits": self.head(scalars)}


def test_contract_module_with_confidence_equigrad_and_cap(student, labelled):
    module = ConfidenceStudent(tiny_mace(ELEMENTS, seed=2))
    data = LabelledData(labelled[:2], keys=LabelKeys(), graph_options={
        "cutoff": 4.0, "z_table": ELEMENTS, **module.graph_options()})  # fmt: skip
    assert max(int(torch.bincount(g["edge_index"][1]).max()) for g in data.graphs) == 4
    weights = LossWeights(confidence=1.0, equigrad=1.0)
    config = TrainConfig(epochs=1, batch_size=2, loss=weights, val_fraction=0.0, **QUIET)
    trained, report = train(module, labelled[:4], config=config)
    terms = report.history[0]["train_terms"]
    assert {"energy", "forces", "confidence", "equigrad"} <= set(terms)
    assert terms["equigrad"] < 1e-16  # a mace energy is rotation invariant
    assert isinstance(trained, ConfidenceStudent) and report.fused_blocks == 2
    assert not torch.equal(trained.head.weight, module.head.weight)


def test_mixed_teacher_and_reference_labels():
    teacher_labels = StructureLabels(energy=1.0, forces=torch.ones(2, 3))
    reference = StructureLabels(energy=3.0, forces=torch.zeros(2, 3), stress=torch.eye(3))
    mixed = mix_labels(teacher_labels, reference, 0.25)
    assert mixed.energy == pytest.approx(0.25 * 1.0 + 0.75 * 3.0)
    torch.testing.assert_close(mixed.forces, torch.full((2, 3), 0.25))
    assert mixed.stress is None  # only where both have it


def test_distillation_float32_plateau_stress_and_hessian_rows(teacher):
    config = TrainConfig(
        epochs=2, batch_size=2, dtype="float32", schedule="plateau", ema_decay=None,
        loss=LossWeights(stress=1.0, hessian=1.0), teacher_hessian_rows=1, val_fraction=0.25,
        **QUIET,
    )  # fmt: skip
    trained, report = train(tiny_mace(ELEMENTS, seed=3), silicon_cells(4), config=config,
                            teacher=teacher)  # fmt: skip
    terms = report.history[-1]["train_terms"]
    assert terms["stress"] > 0 and terms["hessian"] > 0
    assert next(trained.parameters()).dtype == torch.float32
    assert report.n_train == 3 and report.n_val == 1


def test_config_round_trip_and_unknown_keys():
    config = TrainConfig(loss=LossWeights(forces=3.0, huber_delta=None), frozen=("readouts",))
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown TrainConfig keys \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="checkpoint_path"):
        TrainConfig(resume=True)


def test_trains_a_student_with_smooth_cap_direct_forces_and_confidence(labelled):
    student_module = pytest.importorskip("macelerate.models.student")
    config = student_module.StudentConfig(
        atomic_numbers=(1, 6, 8), atomic_energies=(-1.0, -2.0, -3.0), channels=8, max_ell=2,
        radial_mlp=(16,), r_max=4.0, max_neighbors=5, smooth_cap=True, direct_forces=True,
        confidence_head=True,
    )  # fmt: skip
    student = student_module.build_student(config)
    weights = LossWeights(confidence=1.0)
    train_config = TrainConfig(epochs=1, batch_size=2, loss=weights, val_fraction=0.25, **QUIET)
    trained, report = train(student, labelled[:4], config=train_config)
    assert isinstance(trained, student_module.Student) and report.fused_blocks == 2
    assert report.history[0]["train_terms"]["confidence"] > 0
    assert report.export_max_force_diff < 1e-12
    data = LabelledData(  # the loop's graphs have the edges of the student's own graphs
        labelled[:1], keys=LabelKeys(), graph_options=model_graph_options(student),
        edge_selection=model_edge_selection(student),
    )  # fmt: skip
    own = student.build_graph(labelled[0])
    assert torch.equal(data.graphs[0]["edge_index"], own["edge_index"])
    assert own["edge_index"].shape[1] < build_graph(labelled[0], cutoff=4.4)["edge_index"].shape[1]


def test_a_time_budget_stops_after_the_first_step_and_is_resumable(student, labelled, tmp_path):
    config = _resume_config(tmp_path, max_seconds=1e-9)
    _, report = train(student, labelled[:6], config=config, val_structures=labelled[6:8])
    # the budget is checked before each step, so the first step always runs
    assert report.stop_reason == "max_seconds" and report.steps == 0
    assert not report.stopped_at_max_steps
    assert (tmp_path / "state.pt").is_file()
    _, resumed = train(student, labelled[:6], config=_resume_config(tmp_path, resume=True),
                       val_structures=labelled[6:8])  # fmt: skip
    assert resumed.stop_reason == "completed" and resumed.steps == 6


def test_early_stopping_stops_when_validation_stalls(student, labelled):
    # lr 0 cannot improve the validation loss, so the run stops after patience + 1 epochs
    config = TrainConfig(epochs=8, batch_size=3, lr=1e-12, early_stop_patience=2, **QUIET)
    _, report = train(student, labelled[:6], config=config, val_structures=labelled[6:8])
    assert report.stop_reason == "early_stop"
    assert report.epochs_completed == 3 and len(report.history) == 3


def test_time_and_patience_settings_are_checked():
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(max_seconds=-1.0)
    with pytest.raises(ValueError, match="early_stop_patience"):
        TrainConfig(early_stop_patience=0)
