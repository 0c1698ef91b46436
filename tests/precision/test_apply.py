"""apply_precision / load(precision=...): per-block dtypes, accuracy, equivariance, no leaks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate import load
from macelerate.precision import PRESETS, PrecisionError
from macelerate.precision.islands import PrecisionIsland
from macelerate.testing import numeric_forces, rotation_matrix, tiny_mace
from macelerate.transforms import apply_precision


@pytest.fixture(scope="module")
def reference():
    return load(tiny_mace([1, 6, 8, 14], channels=16, max_L=1, seed=3))


def test_fp64_preset_reproduces_the_plain_float64_model(reference, ethanol, silicon):
    potential, report = apply_precision(reference, "fp64", probe=[ethanol, silicon])
    assert report.deviation.force_max_mev < 1e-9
    assert report.deviation.energy_per_atom_max_mev < 1e-9
    stressed = potential.predict(silicon)
    np.testing.assert_allclose(stressed.stress, reference.predict(silicon).stress, atol=1e-12)


def test_each_block_runs_in_the_dtype_its_policy_field_names(reference):
    potential, report = apply_precision(reference, "bf16-mixed")
    roles = {row.path: row for row in report.blocks}
    assert roles["spherical_harmonics"].compute == "float32"
    assert roles["interactions.0.conv_tp"].compute == "float32"  # neighbour sum island
    assert roles["interactions.0.linear"].compute == "bfloat16"
    assert roles["interactions.0.conv_tp_weights"].compute == "bfloat16"
    sc = roles["products.0.symmetric_contractions"]
    assert (sc.compute, sc.parameters) == ("float32", "bfloat16")  # stored bf16, used in fp32
    assert roles["readouts.0"].output == "float64"
    assert roles["scale_shift"].compute == "float64"
    islands = [m for m in potential.model.modules() if isinstance(m, PrecisionIsland)]
    assert len(islands) == len(report.blocks)
    half = [p for p in potential.model.parameters() if p.dtype == torch.bfloat16]
    assert half, "bf16-mixed must store some weights in bfloat16"
    assert report.parameter_bytes_after < report.parameter_bytes_before


def test_source_potential_and_torch_globals_are_untouched(reference, ethanol):
    before = {k: v.clone() for k, v in reference.model.state_dict().items()}
    default_dtype, matmul = torch.get_default_dtype(), torch.get_float32_matmul_precision()
    potential, _ = apply_precision(reference, "tf32")
    potential.predict(ethanol)
    assert torch.get_default_dtype() == default_dtype
    assert torch.get_float32_matmul_precision() == matmul
    after = reference.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, PrecisionIsland) for m in reference.model.modules())


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_stays_close_and_equivariant(reference, ethanol, preset):
    potential, report = apply_precision(reference, preset, probe=[ethanol])
    forces = reference.predict(ethanol).forces
    scale = 1000.0 * np.sqrt(np.mean(forces**2))  # meV/Å
    tolerance = {"fp64": 1e-9, "fp32": 1e-4, "tf32": 1e-4}.get(preset, 0.05)
    assert report.deviation.force_rms_mev <= tolerance * scale
    rotation = rotation_matrix(np.random.default_rng(5))
    rotated = ethanol.copy()
    rotated.positions = ethanol.positions @ rotation.T
    a, b = potential.predict(ethanol), potential.predict(rotated)
    rotation_error = np.abs(a.forces @ rotation.T - b.forces).max() * 1000.0
    assert rotation_error <= max(3 * report.deviation.force_max_mev, 1e-6)
    assert a.energy.dtype == np.float64


def test_low_precision_forces_are_still_gradients_of_the_energy(reference, ethanol):
    potential, _ = apply_precision(reference, "fp32")
    analytic = potential.predict(ethanol).forces[[0, 3]]
    numeric = numeric_forces(potential, ethanol, indices=[0, 3], delta=1e-3)
    np.testing.assert_allclose(analytic, numeric, atol=2e-4)


def test_load_takes_a_precision_and_refuses_a_conflicting_dtype(tiny_model_file, ethanol):
    potential = load(tiny_model_file, precision="bf16-linear")
    assert potential.precision.name == "bf16-linear"
    assert potential.dtype == torch.float64  # positions and forces
    assert np.isfinite(potential.predict(ethanol).forces).all()
    with pytest.raises(ValueError, match="either dtype='float32' or precision"):
        load(tiny_model_file, dtype="float32", precision="fp32")


def test_reapplying_is_allowed_from_full_precision_but_not_from_rounded_weights(reference):
    fp32, _ = apply_precision(reference, "fp32")
    again, _ = apply_precision(fp32, "bf16-linear")
    assert again.precision.name == "bf16-linear"
    with pytest.raises(PrecisionError, match="load the model again"):
        apply_precision(again, "fp64")


def test_unknown_device_dtype_combination_is_a_clear_error(reference, monkeypatch):
    from macelerate.precision import apply as apply_module

    def no_half(*args, **kwargs):
        raise RuntimeError("not implemented for 'BFloat16'")

    monkeypatch.setattr(apply_module.torch, "ones", no_half)
    with pytest.raises(PrecisionError, match="cannot compute in torch.bfloat16"):
        apply_module.check_device_supports(PRESETS["bf16-linear"], "cpu")


def test_torchscript_models_are_refused(reference):
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    from macelerate.precision.apply import wrap_blocks

    with pytest.raises(PrecisionError, match="TorchScript"):
        wrap_blocks(scripted, PRESETS["fp32"])
    with pytest.raises(PrecisionError, match="none of the blocks"):
        wrap_blocks(torch.nn.Linear(2, 2), PRESETS["fp32"])


def test_frozen_half_weights_are_upcast_once_and_refreshed_when_changed(reference, ethanol):
    potential, _ = apply_precision(reference, "bf16-mixed")
    island = potential.model.products[0].symmetric_contractions
    first = potential.predict(ethanol).forces
    cached = island._compute_state()
    assert cached and island._compute_state() is cached  # reused across calls
    with torch.no_grad():
        next(island.module.parameters()).mul_(2.0)  # bumps the version: the cache is stale
    assert island._compute_state() is not cached
    assert not np.allclose(potential.predict(ethanol).forces, first)
