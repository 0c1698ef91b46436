"""Model files: conversion round trip, weights-only loading, and bad files refused clearly."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import torch

from macelerate.errors import ModelFileError
from macelerate.models.checkpoint import FORMAT_VERSION
from macelerate.models.convert import convert
from macelerate.models.info import describe
from macelerate.models.loading import load


def test_convert_round_trip_is_exact(tiny_model_file, tmp_path, silicon):
    report = convert(tiny_model_file, tmp_path / "tiny.pt")
    assert report.max_abs_force_diff < 1e-12
    payload = torch.load(tmp_path / "tiny.pt", weights_only=True)  # no code runs
    assert payload["format_version"] == FORMAT_VERSION
    assert payload["provenance"]["source_kind"] == "mace-pickle"
    original = load(tiny_model_file).predict(silicon)
    rebuilt = load(tmp_path / "tiny.pt", allow_pickle=False)
    assert rebuilt.source.kind == "checkpoint"
    again = rebuilt.predict(silicon)
    np.testing.assert_allclose(again.forces, original.forces, atol=1e-12)
    np.testing.assert_allclose(again.stress, original.stress, atol=1e-12)


def test_describe_reports_architecture(tiny_model_file):
    facts = describe(load(tiny_model_file))
    assert facts["elements"] == ["H", "C", "O", "Si"]
    assert facts["channels"] == 8 and facts["max_L"] == 1 and facts["max_ell"] == 2
    assert facts["correlation"] == 2 and facts["num_interactions"] == 2
    assert facts["num_parameters"] > 0 and facts["r_max"] == 4.0


def test_pickles_refused_when_not_allowed(tiny_model_file):
    with pytest.raises(ModelFileError, match="allow_pickle=False"):
        load(tiny_model_file, allow_pickle=False)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_foreign_pickle_is_never_executed(tmp_path):
    path = tmp_path / "evil.model"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(ModelFileError, match="refuses to unpickle"):
        load(path)


def test_missing_text_corrupted_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load(tmp_path / "nope.model")
    text = tmp_path / "notes.model"
    text.write_text("not a model")
    with pytest.raises(ModelFileError, match="not a model file"):
        load(text)
    weights = tmp_path / "weights.pt"
    torch.save({"layer.weight": torch.zeros(2)}, weights)
    with pytest.raises(ModelFileError, match="holds no model"):
        load(weights)
    broken = tmp_path / "broken.model"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("broken/data.pkl", b"\x80\x02garbage")
    with pytest.raises(ModelFileError):
        load(broken)


def test_newer_checkpoint_format_is_refused(tiny_model_file, tmp_path):
    convert(tiny_model_file, tmp_path / "tiny.pt")
    payload = torch.load(tmp_path / "tiny.pt", weights_only=True)
    payload["format_version"] = FORMAT_VERSION + 1
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ModelFileError, match="newer than this macelerate"):
        load(tmp_path / "future.pt")
