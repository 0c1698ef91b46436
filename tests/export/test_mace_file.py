"""``export_mace``: a plain mace-torch file that loads back as the same model, or a refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate._mace import model_construction
from macelerate.export import ExportError, export_mace
from macelerate.mace.contract import MODEL_CLASSES
from macelerate.models.loading import load


def _torch_load(path):
    """What ``MACECalculator(model_paths=...)`` does: unpickle the whole module."""
    with model_construction():  # silences e3nn's known construction warnings
        return torch.load(path, map_location="cpu", weights_only=False)


def _max_differences(first, second, structures):
    d_energy = d_force = 0.0
    for atoms in structures:
        a = first.predict(atoms, compute_stress=False)
        b = second.predict(atoms, compute_stress=False)
        d_energy = max(d_energy, float(np.abs(a.energy - b.energy).max()))
        d_force = max(d_force, float(np.abs(a.forces - b.forces).max()))
    return d_energy, d_force


def test_round_trip_equals_the_original(tmp_path, tiny_model_file, tiny_model, silicon, ethanol):
    out = tmp_path / "exported.model"
    report = export_mace(tiny_model_file, out)
    assert report.path == out and report.format == "mace" and report.changes == ()
    assert report.agreement.max_abs_force_diff <= 1e-12
    assert report.summary().startswith(f"wrote {out} (mace, float64)")
    written = _torch_load(out)
    assert type(written).__name__ in MODEL_CLASSES
    packages = {type(m).__module__.split(".")[0] for m in written.modules()}
    assert packages <= {"mace", "e3nn", "torch"}
    d_energy, d_force = _max_differences(load(written), load(tiny_model), [silicon, ethanol])
    assert d_energy <= 1e-12 and d_force <= 1e-12


def test_mace_calculator_runs_the_written_file(tmp_path, tiny_model, silicon, ethanol):
    from macelerate._mace import import_mace
    from macelerate._torch_state import default_dtype

    import_mace()
    from mace.calculators import MACECalculator

    out = tmp_path / "exported.model"
    export_mace(tiny_model, out)
    potential = load(tiny_model)
    with default_dtype(torch.float64):  # MACECalculator sets the process-wide default dtype
        calculator = MACECalculator(model_paths=str(out), device="cpu", default_dtype="float64")
        for atoms in (silicon, ethanol):
            atoms = atoms.copy()
            atoms.calc = calculator
            ours = potential.predict(atoms, compute_stress=False)
            assert abs(ours.energy[0] - atoms.get_potential_energy()) < 1e-8
            np.testing.assert_allclose(ours.forces, atoms.get_forces(), atol=1e-8)


def test_a_fused_potential_is_written_in_mace_layout(tmp_path, tiny_model, silicon):
    potential = load(tiny_model)  # runs macelerate's fused kernels
    assert potential.fused_blocks > 0
    out = tmp_path / "fused.model"
    export_mace(potential, out, dtype="float32")
    written = _torch_load(out)
    assert not any(type(m).__module__.startswith("macelerate") for m in written.modules())
    assert next(written.parameters()).dtype == torch.float32
    assert potential.fused_blocks > 0  # the source is unchanged


def test_hard_capped_student_needs_allow_uncapped(tmp_path, students):
    out = tmp_path / "capped.model"
    with pytest.raises(ExportError, match="capped at 3 neighbours.*allow_uncapped=True"):
        export_mace(students["capped"], out)
    assert not out.exists()
    report = export_mace(students["capped"], out, allow_uncapped=True)
    assert any("confidence head left out" in change for change in report.changes)
    assert any("neighbour cap of 3 dropped" in change for change in report.changes)
    assert type(_torch_load(out)).__name__ == "ScaleShiftMACE"


@pytest.mark.parametrize(
    "name,reason",
    [("direct", "direct force head, a direct stress head"), ("smooth", "smooth neighbour cap")],
)
def test_students_mace_cannot_hold_are_refused(tmp_path, students, name, reason):
    with pytest.raises(ExportError, match=reason):
        export_mace(students[name], tmp_path / "student.model")
    assert list(tmp_path.iterdir()) == []


def test_approximate_potentials_and_torchscript_are_refused(tmp_path, tiny_model):
    with pytest.raises(ExportError, match="tabulate_radial"):
        export_mace(load(tiny_model, radial="tabulated"), tmp_path / "a.model")
    with pytest.raises(ExportError, match="TorchScript"):
        export_mace(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "b.model")
    with pytest.raises(ExportError, match="dtype must be one of"):
        export_mace(tiny_model, tmp_path / "c.model", dtype="float16")
