"""PrecisionPolicy: presets, validation, overrides, serialisation."""

from __future__ import annotations

import pytest
import torch

from macelerate.precision import PRESETS, PrecisionError, PrecisionPolicy, resolve_policy
from macelerate.precision.policy import dtype_fields


def test_presets_are_the_named_six_and_keep_the_islands_in_float32_or_better():
    assert set(PRESETS) == {"fp64", "fp32", "tf32", "bf16-linear", "fp16-linear", "bf16-mixed"}
    for policy in PRESETS.values():
        for name in PrecisionPolicy.ISLANDS:
            assert policy.dtype(name) in (torch.float32, torch.float64), (policy.name, name)
        assert policy.forces_stress == "float64"
        assert policy.energy_accumulation == "float64"


def test_presets_put_half_precision_only_where_they_say():
    assert PRESETS["bf16-linear"].linear == "bfloat16"
    assert PRESETS["fp16-linear"].linear == "float16"
    mixed = PRESETS["bf16-mixed"]
    assert {n for n in dtype_fields() if getattr(mixed, n) == "bfloat16"} == {
        "linear",
        "radial_mlp",
        "readouts",
        "symmetric_contraction_weights",
    }
    assert not PRESETS["fp32"].uses_half and PRESETS["bf16-mixed"].uses_half
    assert PRESETS["tf32"].matmul_precision == "high"
    assert PRESETS["fp32"].matmul_precision == "highest"


@pytest.mark.parametrize("field", PrecisionPolicy.ISLANDS)
def test_half_precision_islands_are_refused_with_the_reason(field):
    with pytest.raises(PrecisionError, match=f"{field}='bfloat16'.*float32 or float64"):
        PrecisionPolicy(**{field: "bfloat16"})


def test_bad_dtype_names_and_unknown_fields_are_refused():
    with pytest.raises(PrecisionError, match="linear='int8' is not one of"):
        PrecisionPolicy(linear="int8")
    with pytest.raises(PrecisionError, match="unknown precision fields"):
        PRESETS["fp32"].with_overrides(lineer="bfloat16")
    with pytest.raises(PrecisionError, match="unknown precision preset 'bf8'"):
        resolve_policy("bf8")
    with pytest.raises(PrecisionError, match="matmul_precision"):
        PrecisionPolicy(matmul_precision="medium")


def test_overrides_and_dicts_round_trip():
    policy = resolve_policy({"preset": "bf16-linear", "radial_mlp": "bfloat16"})
    assert policy.name == "bf16-linear+custom"
    assert policy.linear == "bfloat16" and policy.radial_mlp == "bfloat16"
    assert PrecisionPolicy.from_dict(policy.to_dict()) == policy
    assert resolve_policy(policy) is policy
    assert resolve_policy({}) == PRESETS["fp32"]
