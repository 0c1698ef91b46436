"""Label reading: numeric, finite, right-shaped labels; plausibility warnings; ASE index syntax."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import molecule
from ase.io import write

from macelerate.data.labels import (
    energy_label,
    energy_labels,
    forces_label,
    get_label,
    read_structures,
    warn_if_implausible_energies,
)
from macelerate.data.selection import parse_data_path
from macelerate.errors import DataFileError


def _water(energy=-14.2, **info) -> object:
    atoms = molecule("H2O")
    atoms.info["REF_energy"] = energy
    atoms.info.update(info)
    atoms.arrays["REF_forces"] = np.zeros((3, 3))
    return atoms


@pytest.fixture
def frames(tmp_path):
    """Five water molecules; frame i has ``REF_energy`` -10.5 - i eV."""
    path = tmp_path / "water.xyz"
    write(path, [_water(-10.5 - i) for i in range(5)])
    return path


def test_string_label_is_a_clear_error():
    atoms = _water(name="water")
    with pytest.raises(DataFileError, match=r"structure 3 label 'name' is not numeric \('water'\)"):
        get_label(atoms, "name", index=3, path="data.xyz")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_labels_name_the_structure_and_key(bad):
    with pytest.raises(DataFileError, match="data.xyz: structure 7 label 'REF_energy' holds 1 NaN"):
        energy_label(_water(bad), "REF_energy", index=7, path="data.xyz")
    atoms = _water()
    atoms.arrays["REF_forces"][1, 2] = bad
    with pytest.raises(DataFileError, match="structure 2 label 'REF_forces'"):
        forces_label(atoms, "REF_forces", index=2, path="data.xyz")


def test_nan_label_in_a_file_is_rejected_when_read_for_training(tmp_path):
    from macelerate.data.labels import LabelKeys
    from macelerate.train.data import LabelledData

    structures = [_water(), _water(), _water(np.nan)]
    write(tmp_path / "nan.xyz", structures)
    back = read_structures(tmp_path / "nan.xyz")
    keys = LabelKeys(energy="REF_energy", forces="REF_forces")
    with pytest.raises(DataFileError, match="structure 2 label 'REF_energy' holds 1 NaN/inf"):
        LabelledData(back, keys=keys, graph_options={"cutoff": 4.0, "z_table": [1, 8]})


def test_labels_of_the_wrong_shape_are_clear_errors():
    atoms = _water()
    with pytest.raises(DataFileError, match="'REF_forces' has shape \\(3, 3\\), but an energy"):
        energy_label(atoms, "REF_forces", index=0, path="d")
    atoms.arrays["charges"] = np.zeros(3)
    with pytest.raises(DataFileError, match=r"'charges' has shape \(3,\); forces must be \[3, 3\]"):
        forces_label(atoms, "charges", index=0, path="d")


def test_implausible_energies_warn():
    with pytest.warns(UserWarning, match="whole number.*count or an id"):
        warn_if_implausible_energies([1.0, 2.0, 3.0], [3, 3, 3], key="step", path="d")
    with pytest.warns(UserWarning, match="structure 1 label 'E' is 3e\\+07.*eV/atom"):
        warn_if_implausible_energies([-14.1, 3e7], [3, 3], key="E", path="d")
    structures = [_water(step=i) for i in range(3)]
    with pytest.warns(UserWarning, match="'step'"):
        energy_labels(structures, "step", path="d")
    warn_if_implausible_energies([-14.2, -14.3], [3, 3], key="E", path="d")  # no warning
    warn_if_implausible_energies([-1.0, -1.0], [2, 2], key="E", path="d")  # constants: silent


def test_ase_index_syntax(frames):
    energy = lambda atoms: atoms.info["REF_energy"]  # noqa: E731
    assert [energy(a) for a in read_structures(f"{frames}@:2")] == [-10.5, -11.5]
    assert [energy(a) for a in read_structures(f"{frames}@-1")] == [-14.5]
    assert [energy(a) for a in read_structures(f"{frames}@3")] == [-13.5]
    assert [energy(a) for a in read_structures(f"{frames}@1::2")] == [-11.5, -13.5]
    assert len(read_structures(frames)) == 5
    assert len(read_structures(f"{frames}@-5", index="0")) == 1  # the path's index wins


@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        ("@5", "index 5 is out of range for .*holds 5 structures \\(valid: -5 to 4\\)"),
        ("@-6", "index -6 is out of range"),
        ("@7:9", "holds no structures at index '7:9'"),
        ("@x", "bad structure index 'x'.*FILE@N"),
        ("@::0", "bad structure index '::0'"),
    ],
)
def test_bad_indices_are_clear_errors(frames, suffix, message):
    with pytest.raises(DataFileError, match=message):
        read_structures(f"{frames}{suffix}")


def test_missing_files_and_names_with_at_signs(tmp_path, frames):
    with pytest.raises(DataFileError, match="data file .*missing.xyz does not exist"):
        read_structures(tmp_path / "missing.xyz@:3")
    odd = tmp_path / "run@2.xyz"  # an existing file whose name holds '@' is read whole
    odd.write_bytes(frames.read_bytes())
    assert parse_data_path(odd) == (odd, None)
    assert len(read_structures(odd)) == 5
