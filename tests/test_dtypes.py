"""Dtype names: one table, parsed and printed the same way everywhere."""

from __future__ import annotations

import pytest
import torch

from macelerate._dtypes import DTYPES, MODEL_DTYPES, dtype_name, parse_dtype


def test_names_round_trip():
    for name, dtype in DTYPES.items():
        assert dtype_name(dtype) == name
        assert parse_dtype(name, allowed=DTYPES) is dtype
    assert [parse_dtype(name) for name in MODEL_DTYPES] == [torch.float64, torch.float32]


def test_half_precision_is_refused_for_whole_models():
    with pytest.raises(ValueError, match=r"one of \['float32', 'float64'\], got 'bfloat16'"):
        parse_dtype("bfloat16")
    with pytest.raises(ValueError, match="got 'double'"):
        parse_dtype("double", allowed=DTYPES)
