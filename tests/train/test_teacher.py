"""Teacher labelling: labels equal the teacher's predictions, provenance, Hessian rows, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from macelerate import load
from macelerate._version import __version__
from macelerate.data.labels import LabelKeys, read_structures
from macelerate.models.checkpoint import file_sha256
from macelerate.testing import tiny_mace
from macelerate.train.data import LabelledData, read_labels
from macelerate.train.teacher import label_structures, sample_structures, write_structures
from tests.train import ethanols, silicon_cells


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.model"
    torch.save(tiny_mace([1, 6, 8, 14], seed=1), path)
    return path


@pytest.fixture(scope="module")
def teacher(teacher_file):
    return load(teacher_file, dtype="float64")


def test_labels_are_the_teacher_predictions_with_provenance(teacher, teacher_file, tmp_path):
    structures = ethanols(2) + silicon_cells(2)
    labelled = label_structures(teacher, structures, batch_size=3)
    assert all(atoms.calc is None for atoms in structures)  # inputs untouched
    for atoms, copy in zip(structures, labelled):
        prediction = teacher.predict(atoms)
        assert copy.get_potential_energy() == pytest.approx(prediction.energy[0], abs=1e-12)
        np.testing.assert_allclose(copy.get_forces(), prediction.forces, atol=1e-12)
        assert ("stress" in copy.calc.results) == bool(atoms.pbc.all())
        assert copy.info["teacher"] == str(teacher_file)
        assert copy.info["teacher_sha256"] == file_sha256(teacher_file)
        assert copy.info["macelerate_version"] == __version__
    np.testing.assert_allclose(
        labelled[2].get_stress(voigt=False), teacher.predict(structures[2]).stress[0], atol=1e-12
    )
    path = write_structures(tmp_path / "labelled.xyz", labelled)
    back = read_structures(path)
    data = LabelledData(
        back[2:], keys=LabelKeys(stress="stress"),
        graph_options={"cutoff": teacher.r_max, "z_table": teacher.atomic_numbers},
    )  # fmt: skip
    torch.testing.assert_close(
        data.labels[0].stress, torch.from_numpy(teacher.predict(structures[2]).stress[0])
    )
    assert back[0].info["teacher_sha256"] == file_sha256(teacher_file)


def _numeric_hessian_rows(teacher, atoms, atom_indices, delta=1e-4) -> np.ndarray:
    """-dF/dx rows by central differences of the teacher's forces: [3k, 3 n_atoms]."""
    shifted = []
    for a in atom_indices:
        for c in range(3):
            for sign in (1.0, -1.0):
                copy = atoms.copy()
                copy.positions[a, c] += sign * delta
                shifted.append(copy)
    forces = teacher.predict(shifted, compute_stress=False).forces.reshape(len(shifted), -1)
    return -(forces[0::2] - forces[1::2]) / (2 * delta)  # one batched call


def test_hessian_rows_match_finite_differences(teacher, tmp_path):
    structures = [ethanols(1)[0], silicon_cells(1)[0]]
    labelled = label_structures(teacher, structures, hessian_rows=2, seed=3)  # Si: all atoms
    back = read_structures(write_structures(tmp_path / "h.xyz", labelled))  # file round trip
    for atoms, labelled_atoms in zip(structures, back):
        labels = read_labels(labelled_atoms, LabelKeys(), index=0, source="h.xyz")
        chosen = labels.hessian_atoms.tolist()
        assert len(chosen) == 2 and len(set(chosen)) == 2
        numeric = _numeric_hessian_rows(teacher, atoms, chosen)
        assert labels.hessian_rows.shape == (6, 3 * len(atoms))
        np.testing.assert_allclose(labels.hessian_rows.numpy(), numeric, atol=2e-6)
        assert np.abs(numeric).max() > 1e-2  # the comparison is not between zeros


def test_sample_structures_is_deterministic(teacher):
    start = ethanols(1, seed=5)
    options = {"temperatures": (300.0, 900.0), "md_steps": 4, "interval": 2, "n_rattled": 3}
    samples = sample_structures(teacher, start, seed=7, **options)
    again = sample_structures(teacher, start, seed=7, **options)
    assert len(samples) == 2 * 2 + 3
    for a, b in zip(samples, again):
        np.testing.assert_array_equal(a.positions, b.positions)
    assert all(atoms.calc is None for atoms in samples)
    assert [atoms.info.get("md_temperature") for atoms in samples[:4]] == [300.0] * 2 + [900.0] * 2
    moved = [np.abs(atoms.positions - start[0].positions).max() for atoms in samples]
    assert min(moved) > 0.0 and max(moved) < 1.0
    rattles = np.concatenate([(atoms.positions - start[0].positions) for atoms in samples[4:]])
    assert rattles.std() == pytest.approx(0.05, rel=0.35)


def test_teacher_fits_its_own_hessian_labels_in_a_batch(teacher):
    from macelerate.train.data import LabelledData
    from macelerate.train.loop import forward_batch
    from macelerate.train.losses import hessian_loss

    structures = [silicon_cells(1)[0], ethanols(1)[0], ethanols(1, seed=2)[0]]
    labelled = label_structures(teacher, structures, hessian_rows=2, seed=1)
    data = LabelledData(
        labelled, keys=LabelKeys(),
        graph_options={"cutoff": teacher.r_max, "z_table": teacher.atomic_numbers},
    )  # fmt: skip
    batch = data.batch([2, 0, 1])  # atom offsets differ from the labelling order
    out, positions = forward_batch(teacher.model, batch, training=True, compute_stress=False)
    loss = hessian_loss(out["forces"], positions, batch.hessian, huber_delta=None)
    assert float(loss.detach()) < 1e-20
    assert float(batch.hessian[0].rows.abs().max()) > 1e-2
