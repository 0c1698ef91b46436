"""Real mace-torch checkpoints from ../shared/data: macelerate equals MACECalculator (float64).

The full 20-structure comparison is ``benchmarks/exactness.py``; these tests keep two structures
per model so the suite stays fast.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.needs_shared_data]

CASES = [
    ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz"),
    ("mace_solvent_xtb_tutorial/mace01_swa.model", "solvent_xtb_tutorial/solvent_xtb_test.xyz"),
    ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz"),
]


@pytest.mark.parametrize(("model", "dataset"), CASES, ids=[c[0].split("/")[-1] for c in CASES])
def test_equals_mace_calculator(shared_data, model, dataset):
    import ase.io
    from mace.calculators import MACECalculator

    import macelerate

    path = shared_data / "models" / model
    potential = macelerate.load(path, dtype="float64")
    reference = MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")
    for atoms in ase.io.read(shared_data / dataset, ":2"):
        atoms.calc = reference
        periodic = bool(atoms.pbc.all())
        ours = potential.predict(atoms, compute_stress=periodic)
        assert abs(ours.energy[0] - atoms.get_potential_energy()) < 1e-8
        np.testing.assert_allclose(ours.forces, atoms.get_forces(), atol=1e-8)
        if periodic:
            np.testing.assert_allclose(ours.stress[0], atoms.get_stress(voigt=False), atol=1e-8)


def test_torchscript_export_runs_where_mace_calculator_cannot(shared_data):
    """mace-torch 0.3.16's calculator fails on this 0.3.6 TorchScript export; macelerate runs it."""
    import ase.io

    import macelerate

    folder = shared_data / "models" / "mace_solvent_xtb_tutorial"
    scripted = macelerate.load(folder / "mace01_swa_compiled.model")
    assert scripted.source.kind == "torchscript"
    pickled = macelerate.load(folder / "mace01_swa.model")
    frames = ase.io.read(shared_data / "solvent_xtb_tutorial" / "solvent_xtb_test.xyz", ":3")
    a, b = scripted.predict(frames), pickled.predict(frames)
    np.testing.assert_allclose(a.energy, b.energy, atol=1e-10)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-10)


def test_convert_real_model_round_trip(shared_data, tmp_path):
    import ase.io

    import macelerate

    source = shared_data / "models" / "gst_mace_pr325" / "mace_swa.model"
    report = macelerate.convert(source, tmp_path / "gst.pt")
    assert report.max_abs_force_diff < 1e-10
    atoms = ase.io.read(shared_data / "gst_mace_pr325" / "validate.xyz", "0")
    original = macelerate.load(source).predict(atoms)
    converted = macelerate.load(tmp_path / "gst.pt", allow_pickle=False).predict(atoms)
    np.testing.assert_allclose(converted.forces, original.forces, atol=1e-12)
    assert (
        macelerate.describe(macelerate.load(tmp_path / "gst.pt"))["hidden_irreps"] == "64x0e+64x1o"
    )
