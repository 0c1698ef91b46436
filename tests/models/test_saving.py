"""``save_model`` writes any model macelerate makes, with typed transform records."""

from __future__ import annotations

import numpy as np
import pytest

from macelerate import load
from macelerate.models.checkpoint import make_provenance
from macelerate.models.saving import record_dicts, save_model
from macelerate.records import TransformRecord


def test_records_round_trip_and_old_flat_records_are_read():
    record = TransformRecord("prune", True, {"channels": 4}, {"removed": ["x"]})
    assert TransformRecord.from_dict(record.to_dict()) == record
    old = {"transform": "recovery", "data": "f.xyz", "steps": 3}
    (converted,) = record_dicts([old])
    assert converted == {"name": "recovery", "persistent": True, "options": {},
                         "summary": {"data": "f.xyz", "steps": 3}}  # fmt: skip
    with pytest.raises(ValueError, match="not a transform record"):
        TransformRecord.from_dict({"steps": 3})


def test_a_mace_model_saves_weights_only_with_its_records(tiny_model, tmp_path, ethanol):
    path = tmp_path / "model.pt"
    records = [TransformRecord("train", True, {"data": "d.xyz"}, {"steps": 2})]
    save_model(path, tiny_model, provenance=make_provenance("test"), transforms=records)
    loaded = load(path, allow_pickle=False)
    assert loaded.source.transforms_applied[0]["name"] == "train"
    np.testing.assert_allclose(
        loaded.predict(ethanol).forces, load(tiny_model).predict(ethanol).forces, atol=1e-12
    )
