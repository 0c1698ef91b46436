"""Mixed-precision training: half-precision products, float32 islands and masters, loss scaling."""

from __future__ import annotations

import functools

import pytest
import torch

from macelerate import load
from macelerate.graph.batch import build_graph
from macelerate.testing import tiny_mace
from macelerate.train.errors import TrainConfigError
from macelerate.train.loop import TrainConfig, train, training_copy
from macelerate.train.mixed_precision import MixedPrecision
from macelerate.train.teacher import label_structures
from tests.train import ethanols

ELEMENTS = [1, 6, 8, 14]
QUIET = {"progress": False, "dtype": "float32"}


@pytest.fixture(scope="module")
def labelled():
    teacher = load(tiny_mace(ELEMENTS, seed=1), dtype="float64")
    return label_structures(teacher, ethanols(10))


def _block_dtypes(model, graph, names):
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen.setdefault(name, out.dtype)  # returns None: the output is kept

        return hook

    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(record(name)) for name in names]
    out = model(dict(graph), training=True, compute_force=True, compute_stress=False)
    for hook in hooks:
        hook.remove()
    return seen, out


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_products_run_in_half_precision_and_islands_in_float32(dtype):
    trainee, _ = training_copy(tiny_mace(ELEMENTS, seed=2), TrainConfig(**QUIET))
    plain_keys = list(trainee.state_dict())
    mixed = MixedPrecision(trainee, dtype, torch.device("cpu"))
    assert list(trainee.state_dict()) == plain_keys  # islands do not rename parameters
    assert "readouts.0" in mixed.islands and "products.0.symmetric_contractions" in mixed.islands
    graph = build_graph(ethanols(1)[0], cutoff=float(trainee.r_max), z_table=ELEMENTS,
                        dtype=torch.float32)  # fmt: skip
    graph["positions"].requires_grad_(True)
    names = ["interactions.0.linear_up", "readouts.0", "products.0.symmetric_contractions"]
    with mixed.autocast():
        seen, out = _block_dtypes(trainee, graph, names)
    half = getattr(torch, dtype)
    assert seen["interactions.0.linear_up"] == half
    assert seen["readouts.0"] == torch.float32
    assert seen["products.0.symmetric_contractions"] == torch.float32
    assert out["energy"].dtype == torch.float32 and out["forces"].dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in trainee.parameters())  # float32 masters


def test_bfloat16_training_learns_and_returns_a_float32_model(labelled):
    student = tiny_mace(ELEMENTS, seed=2)
    config = TrainConfig(epochs=4, batch_size=2, autocast="bfloat16", **QUIET)
    trained, report = train(student, labelled[:8], config=config, val_structures=labelled[8:])
    history = report.history
    assert history[-1]["val_forces_rmse"] < 0.8 * history[0]["val_forces_rmse"]
    assert report.mixed_precision["dtype"] == "bfloat16"
    assert report.mixed_precision["overflow_steps"] == 0 and report.skipped_batches == 0
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    assert report.export_max_force_diff < 1e-5  # validated and exported without autocast


def test_float16_overflow_lowers_the_scale_and_is_not_a_bad_batch(labelled, monkeypatch):
    huge = functools.partial(torch.amp.GradScaler, init_scale=2.0**24)
    monkeypatch.setattr(torch.amp, "GradScaler", huge)
    student = tiny_mace(ELEMENTS, seed=2)
    config = TrainConfig(epochs=4, batch_size=2, autocast="float16", max_bad_batches=1, **QUIET)
    trained, report = train(student, labelled[:8], config=config, val_structures=labelled[8:])
    overflows = report.mixed_precision["overflow_steps"]
    assert 1 <= overflows < report.steps and report.skipped_batches == 0
    assert all(bool(torch.isfinite(p).all()) for p in trained.parameters())


def test_autocast_needs_float32_master_weights():
    with pytest.raises(TrainConfigError, match="pass --dtype float32 with --autocast"):
        TrainConfig(autocast="bfloat16", dtype="float64")
    with pytest.raises(TrainConfigError, match="--autocast"):
        TrainConfig(autocast="int8", dtype="float32")  # type: ignore[arg-type]
