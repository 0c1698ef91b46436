"""validate_student on tiny models: self-consistency, a differing student, an exploding student."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator

from macelerate import load
from macelerate._torch_state import num_threads as torch_threads
from macelerate.data.labels import LabelKeys
from macelerate.errors import DataFileError
from macelerate.models.student import StudentConfig, build_student
from macelerate.pipeline.distributions import pair_distribution, rdf_distance, spearman
from macelerate.pipeline.validation import (
    StudentValidation,
    ValidationConfig,
    ValidationConfigError,
    validate_student,
)
from macelerate.train.teacher import label_structures

ELEMENTS = (1, 6, 8, 14)
TINY = ValidationConfig(
    nve_steps=10, md_steps_rdf=10, rdf_every=2, rdf_bins=40, speed_repeats=2, threads=1
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the CPUs are shared."""
    with torch_threads(1):
        yield


def tiny_student(**options):
    config = StudentConfig(
        atomic_numbers=ELEMENTS, atomic_energies=(-1.0, -1.5, -2.0, -2.5), channels=8, max_L=1,
        max_ell=2, r_max=4.0, radial_mlp=(8, 8), **options,
    )  # fmt: skip
    torch.manual_seed(0)
    return load(build_student(config))


def rattled(atoms: Atoms, n: int, *, seed: int) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    copies = []
    for _ in range(n):
        copy = atoms.copy()
        copy.rattle(0.05, rng=rng)
        copies.append(copy)
    return copies


def noisy_copies(labelled: list[Atoms], *, seed: int) -> list[Atoms]:
    """Copies whose energy, forces and stress labels are the given ones plus noise."""
    rng = np.random.default_rng(seed)
    copies = []
    for atoms in labelled:
        copy = atoms.copy()
        results = {key: value + rng.normal(scale=0.05, size=np.shape(value))
                   for key, value in atoms.calc.results.items()}  # fmt: skip
        copy.calc = SinglePointCalculator(copy, **results)
        copies.append(copy)
    return copies


@pytest.fixture(scope="module")
def teacher(tiny_model):
    return load(tiny_model)


@pytest.fixture(scope="module")
def ethanol_test(teacher):
    return label_structures(teacher, rattled(molecule("CH3CH2OH"), 3, seed=0))


@pytest.fixture(scope="module")
def self_validation(teacher, ethanol_test) -> StudentValidation:
    """The teacher validated against itself as the 'student'."""
    return validate_student(
        teacher, teacher, ethanol_test, molecule("CH3CH2OH"), config=TINY, progress=False
    )


def test_teacher_against_itself_has_no_error_and_no_speedup(self_validation):
    v = self_validation
    assert v.vs_teacher.force_rmse_mev_per_a == pytest.approx(0.0, abs=1e-9)
    assert v.vs_teacher.energy_rmse_mev_per_atom == pytest.approx(0.0, abs=1e-9)
    assert v.vs_teacher.stress_rmse_mev_per_a3 is None  # molecules: no stress
    assert set(v.vs_teacher.per_element_force_rmse_mev_per_a) == {"H", "C", "O"}
    assert v.nve_student == v.nve_teacher  # the same deterministic run
    assert math.isfinite(v.nve_teacher.drift_mev_per_atom_ps)
    assert v.rdf.kind == "pair-distance density" and v.rdf.distance == 0.0
    assert v.rdf.n_frames == 5
    assert v.rotation_force_rel < 1e-10 and v.equigrad_norm_ev < 1e-10
    assert v.confidence_spearman is None  # no confidence head
    assert 0.3 < v.speed.speedup < 3.0 and v.speed.threads == 1
    assert len(v.speed.teacher_samples_ms) == TINY.speed_repeats
    assert not v.failed and v.problem is None and v.force_error_ratio is None


def test_to_dict_is_strict_json_with_plot_series(self_validation):
    data = json.loads(json.dumps(self_validation.to_dict(), allow_nan=False))
    assert data["failed"] is False and data["config"]["nve_steps"] == TINY.nve_steps
    parity = data["series"]["parity_test"]
    assert len(parity["teacher_forces_ev_per_a"]) == 3 * 9 * 3  # structures x atoms x xyz
    assert parity["teacher_forces_ev_per_a"] == pytest.approx(parity["student_forces_ev_per_a"])
    trace = data["series"]["nve"]["student"]
    assert len(trace["time_ps"]) == TINY.nve_steps + 1 == len(trace["total_energy_mev_per_atom"])
    assert trace["total_energy_mev_per_atom"][0] == 0.0
    rdf = data["series"]["rdf"]
    assert len(rdf["r_a"]) == TINY.rdf_bins and rdf["teacher"] == rdf["student"]
    assert data["series"]["parity_reference"] is None


def test_periodic_student_with_confidence_and_reference_labels(teacher):
    silicon = bulk("Si", "diamond", a=5.43, cubic=True)
    structures = rattled(silicon, 3, seed=1)
    test = label_structures(teacher, structures)
    dft = noisy_copies(test, seed=3)  # "reference" labels
    student = tiny_student(confidence_head=True)
    start = rattled(silicon, 1, seed=2)[0]  # the perfect crystal has zero forces in any model
    config = replace(TINY, timestep_fs=1.0, rdf_bins=600)  # 0.01 Å bins: 10 fs runs differ
    v = validate_student(
        teacher, student, test, start, reference=dft, reference_keys=LabelKeys(stress="stress"),
        config=config, progress=False,
    )  # fmt: skip
    assert v.vs_teacher.force_rmse_mev_per_a > 0 and v.vs_teacher.stress_rmse_mev_per_a3 > 0
    assert v.teacher_vs_reference.force_rmse_mev_per_a > 0
    assert v.force_error_ratio == pytest.approx(
        v.student_vs_reference.force_rmse_mev_per_a / v.teacher_vs_reference.force_rmse_mev_per_a
    )
    assert v.student_vs_reference.stress_rmse_mev_per_a3 is not None
    assert -1.0 <= v.confidence_spearman <= 1.0
    assert v.rdf.kind == "g(r)" and v.rdf.distance > 0  # different forces, different MD
    assert v.speed.teacher_ms > 0 and v.speed.student_ms > 0 and v.speed.dtype == "float32"
    parity = v.series["parity_reference"]
    assert len(parity["reference_forces_ev_per_a"]) == len(parity["student_forces_ev_per_a"]) == 72


def test_exploding_student_is_recorded_not_raised(teacher, ethanol_test):
    student = tiny_student(atomic_inter_scale=1e4)  # forces of ~1e3 eV/Å
    v = validate_student(
        teacher, student, ethanol_test, molecule("CH3CH2OH"), config=TINY, progress=False
    )
    assert v.failed and "blew up" in v.problem
    assert v.nve_student.failed and v.nve_student.drift_mev_per_atom_ps is None
    assert not v.nve_teacher.failed and v.rdf.distance is None and v.rdf.problem
    data = json.loads(json.dumps(v.to_dict(), allow_nan=False))
    assert data["failed"] is True and data["series"]["rdf"]["student"] is None
    assert data["nve_student"]["steps_completed"] < TINY.nve_steps


def test_empty_test_set_and_bad_config_are_refused(teacher):
    with pytest.raises(DataFileError, match="test set is empty"):
        validate_student(teacher, teacher, [], molecule("CH4"), config=TINY, progress=False)
    with pytest.raises(ValidationConfigError, match="nve_steps.*dtype"):
        ValidationConfig(nve_steps=1, dtype="float16")
    with pytest.raises(ValidationConfigError, match="unknown ValidationConfig keys"):
        ValidationConfig.from_dict({"nve_step": 10})
    assert ValidationConfig.from_dict(TINY.to_dict()) == TINY


def test_pair_distribution_of_a_dimer_and_of_a_crystal():
    dimer = Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.05]])
    r, h, kind = pair_distribution([dimer], r_max=2.0, bins=20)
    assert kind == "pair-distance density"
    assert np.sum(h) * (r[1] - r[0]) == pytest.approx(1.0)  # one neighbour per atom
    assert r[np.argmax(h)] == pytest.approx(1.05)
    silicon = bulk("Si", "diamond", a=5.43, cubic=True)
    r, g, kind = pair_distribution([silicon], r_max=3.0, bins=30)
    shell = 4 * np.pi * r**2 * (r[1] - r[0]) * len(silicon) / silicon.get_volume()
    assert kind == "g(r)" and np.sum(g * shell) == pytest.approx(4.0, rel=0.02)  # 4 neighbours
    assert rdf_distance(g, g) == 0.0 and rdf_distance(np.zeros(3), g[:3]) is None


def test_spearman_with_ties_and_constants():
    x = np.array([1.0, 2.0, 2.0, 5.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, np.ones(4)) is None and spearman(x[:1], x[:1]) is None


def test_torch_threads_restores_the_count():
    before = torch.get_num_threads()
    with torch_threads(2) as used:
        assert used == torch.get_num_threads() == 2
    assert torch.get_num_threads() == before
