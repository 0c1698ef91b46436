"""``compress``: from a teacher and the user's structures to a validated fast student.

Stages, each recorded in ``DIR/compress.json`` when it finishes (:mod:`.state`), so a killed
run continues where it stopped when run again with the same inputs and ``--out``:

1. ``inputs``: the teacher evaluates every start structure (unknown elements, NaN positions,
   overlapping atoms... fail here, before any slow work) and the reference labels are read.
2. ``sample``: teacher Langevin MD at each temperature, plus rattled and strained copies; split
   into train / validation / test by trajectory segment (:mod:`.sampling`).
3. ``label``: teacher energies, forces and (periodic cells) stress of every split, written to
   ``DIR/data/{train,val,test}.xyz``.
4. ``ladder``: the teacher and every candidate architecture timed on the first start structure
   (:mod:`.ladder`).
5. ``train``: candidates trained in the order of :func:`.selection.training_order` within what
   is left of the budget (less a reserve for validation), each resumable.
6. ``validate``: the chosen student against the teacher on the test split (and the reference
   labels), NVE drift, symmetry, equigrad, RDFs of student vs teacher MD, confidence
   calibration and speed-up (:mod:`.validation`).
7. ``report``: ``DIR/report.md`` and figures, ``DIR/summary.json``, ``DIR/student.pt``.

The verdict is measured on held-out data, never on the data that chose the student: the
validation split (and half of the reference labels) select, the test split (and the other half)
judge.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
from ase import Atoms

from macelerate.atomic_io import write_atomically
from macelerate.data.labels import LabelKeys
from macelerate.models.potential import Potential
from macelerate.pipeline.config import CompressConfig, CompressConfigError
from macelerate.pipeline.engine_export import export_student
from macelerate.pipeline.ladder import Candidate, default_ladder, measure_ladder
from macelerate.pipeline.sampling import SPLITS, sample_splits
from macelerate.pipeline.selection import plan_training, train_candidate, training_order
from macelerate.pipeline.state import CompressState, structures_sha256
from macelerate.train.data import read_labels

VALIDATION_RESERVE = 0.15
"""Share of the budget kept for validation and the report (at least the measured estimate)."""


@dataclass(frozen=True)
class CompressResult:
    """What ``compress`` produced: the verdict, whether the targets were met, the files."""

    out: Path
    met: bool
    verdict: str
    chosen: str | None
    student_path: Path | None
    summary: dict[str, Any]


def _teacher_identity(teacher: Potential) -> dict[str, Any]:
    from macelerate.models.checkpoint import file_sha256

    path = teacher.source.path
    sha = file_sha256(path) if path and Path(path).is_file() else None
    return {"path": path, "sha256": sha, "kind": teacher.source.kind}


def _check_inputs(
    teacher: Potential,
    starts: Sequence[Atoms],
    reference: Sequence[Atoms] | None,
    keys: LabelKeys | None,
    config: CompressConfig,
) -> None:
    """Fail early, with the model's and the data readers' own clear errors."""
    if not starts:
        raise CompressConfigError("no start structure: --structures names an empty file")
    teacher.predict(list(starts))  # unknown elements, NaN/inf, overlaps, empty, zero volume
    if config.accuracy_target == "ratio" and not reference:
        raise CompressConfigError(
            "--max-force-error-ratio compares the student's force error with the teacher's on "
            "labelled data: pass --reference-data FILE (e.g. DFT labels), or use --max-force-rmse"
        )
    if reference:
        if len(reference) < 2 and config.accuracy_target == "ratio":
            raise CompressConfigError(
                "--reference-data needs at least 2 structures (half select, half judge)"
            )
        for i, atoms in enumerate(reference):
            read_labels(atoms, keys or LabelKeys(), index=i, source="--reference-data")


def _labelled_splits(
    teacher: Potential, starts: Sequence[Atoms], config: CompressConfig, out: Path,
    state: CompressState, progress: bool,
) -> dict[str, list[Atoms]]:  # fmt: skip
    from macelerate.train.teacher import label_structures, write_structures

    data = out / "data"
    if state.stage("label") is None:
        if state.stage("sample") is None:
            splits = sample_splits(teacher, starts, config=config.sampling,
                                   folder=out / "sampling", seed=config.seed,
                                   progress=progress)  # fmt: skip
            if not splits.val or not splits.test:
                raise CompressConfigError(
                    f"sampling gave {splits.sizes()} structures: too few MD snapshots for "
                    "validation and test splits; raise md_steps or lower interval"
                )
            state.finish("sample", splits.sizes())
        else:
            splits = sample_splits(
                teacher,
                starts,
                config=config.sampling,
                folder=out / "sampling",
                seed=config.seed,
                progress=False,
            )  # fmt: skip  (reads the trajectories)
        for name in SPLITS:
            labelled = label_structures(teacher, getattr(splits, name), progress=progress)
            write_structures(data / f"{name}.xyz", labelled)
        state.finish("label", {name: str(data / f"{name}.xyz") for name in SPLITS})
    return {name: _read(data / f"{name}.xyz") for name in SPLITS}


def _read(path: Path) -> list[Atoms]:
    frames = ase.io.read(str(path), index=":", format="extxyz")
    return frames if isinstance(frames, list) else [frames]


def _reference_halves(
    reference: Sequence[Atoms] | None, config: CompressConfig
) -> tuple[list[Atoms], list[Atoms]]:
    """(selection, judging) reference structures: alternate frames with a ratio target."""
    if not reference:
        return [], []
    if config.accuracy_target == "ratio":
        return list(reference[0::2]), list(reference[1::2])
    return [], list(reference)


def _force_rmse(potential: Potential, structures: Sequence[Atoms], keys: LabelKeys) -> float:
    from macelerate.evaluate import evaluate

    report = evaluate(potential, structures,
                      keys=LabelKeys(energy=keys.energy, forces=keys.forces))  # fmt: skip
    return float(report.force_rmse) if report.force_rmse is not None else math.nan


def _accuracy_ok(record: dict[str, Any], config: CompressConfig) -> bool:
    if config.accuracy_target == "ratio":
        ratio = record.get("selection_force_ratio")
        return ratio is not None and ratio <= config.max_force_error_ratio
    if config.accuracy_target == "rmse":
        rmse = record.get("val_forces_rmse_mev")
        return rmse is not None and rmse <= config.max_force_rmse_mev
    return True


def _score(record: dict[str, Any], config: CompressConfig) -> float:
    """Lower is better: the accuracy measure the target uses (force RMSE otherwise)."""
    key = "selection_force_ratio" if config.accuracy_target == "ratio" else "val_forces_rmse_mev"
    value = record.get(key)
    return float(value) if value is not None and math.isfinite(value) else math.inf


def _validation_config(config: CompressConfig) -> Any:
    from macelerate.pipeline.validation import ValidationConfig

    steps = config.validation_md_steps
    return ValidationConfig(
        nve_steps=steps,
        md_steps_rdf=steps,
        speed_repeats=config.timing_repeats,
        dtype=config.speed_dtype,
        threads=config.threads,
        seed=config.seed,
    )


def _validation_reserve(config: CompressConfig, ladder: Sequence[dict[str, Any]]) -> float:
    """Seconds kept for validation: teacher and student MD plus timings, or a budget share."""
    teacher_ms = float(ladder[0]["teacher_ms_per_step"]) if ladder else 0.0
    # NVE + RDF runs of the teacher (float64: ~2x the float32 timing) and the student
    md_seconds = 2.0 * 2 * config.validation_md_steps * 2.0 * teacher_ms / 1e3
    return max(VALIDATION_RESERVE * 60.0 * config.budget_minutes, 1.5 * md_seconds)


def _train_ladder(
    teacher: Potential, splits: dict[str, list[Atoms]], ladder: list[dict[str, Any]],
    select_reference: list[Atoms], keys: LabelKeys | None, config: CompressConfig, out: Path,
    state: CompressState, progress: bool,
) -> tuple[str | None, dict[str, dict[str, Any]]]:  # fmt: skip
    """Train candidates in order until one meets the accuracy target; (chosen, records)."""
    from macelerate import load
    from macelerate.models.checkpoint import make_provenance
    from macelerate.models.saving import save_model
    from macelerate.records import TransformRecord
    from macelerate.train.config import TrainConfig

    records: dict[str, dict[str, Any]] = dict(state.stage("candidates") or {})
    by_name = {r["name"]: r for r in ladder}
    order = training_order(ladder, config)
    teacher_reference = None
    if select_reference:
        teacher_reference = state.stage("teacher_selection_rmse")
        if teacher_reference is None:
            teacher_reference = _force_rmse(teacher, select_reference, keys or LabelKeys())
            state.finish("teacher_selection_rmse", teacher_reference)
    deadline = 60.0 * config.budget_minutes - _validation_reserve(config, ladder)
    for position, name in enumerate(order):
        record = records.get(name, {})
        if record.get("done"):
            if _accuracy_ok(record, config):
                break
            continue
        left = deadline - state.spent_seconds()
        if left <= 10.0 and any(r.get("done") for r in records.values()):
            break  # no time for another candidate; the best so far stands
        share = left / max(1, min(2, len(order) - position))
        folder = out / "candidates" / name
        if "train_config" not in record:
            plan = plan_training(by_name[name]["architecture"], splits["train"], splits["val"],
                                 folder=folder, config=config,
                                 budget_seconds=max(share, 10.0))  # fmt: skip
            record = {"train_config": plan.to_dict()}
            records[name] = record
            state.finish("candidates", records)
        train_config = TrainConfig.from_dict(record["train_config"])
        left = deadline - state.spent_seconds()
        share = left / max(1, min(2, len(order) - position))
        student, result = train_candidate(
            by_name[name]["architecture"], splits["train"], splits["val"],
            train_config=train_config, budget_seconds=max(share, 10.0), seed=config.seed,
            progress=progress,
        )  # fmt: skip
        path = folder / "student.pt"
        transform = TransformRecord("compress-train", True, {"candidate": name},
                                    {k: v for k, v in result.items()})  # fmt: skip
        save_model(path, student, provenance=make_provenance(str(teacher.source.path)),
                   transforms=[transform])  # fmt: skip
        record = {**record, **result, "student_file": str(path), "done": True}
        if select_reference and teacher_reference:
            student_rmse = _force_rmse(load(path), select_reference, keys or LabelKeys())
            record["selection_force_rmse_mev"] = student_rmse
            record["selection_force_ratio"] = student_rmse / teacher_reference
        records[name] = record
        state.finish("candidates", records)
        if _accuracy_ok(record, config):
            break
    done = {n: r for n, r in records.items() if r.get("done")}
    if not done:
        return None, records
    passing = [n for n in order if n in done and _accuracy_ok(done[n], config)]
    chosen = passing[0] if passing else min(done, key=lambda n: _score(done[n], config))
    return chosen, records


def _verdict(
    chosen: str | None, validation: dict[str, Any] | None, config: CompressConfig
) -> tuple[bool, str, dict[str, Any]]:
    """(met, one-line verdict, per-target checks) from the held-out validation numbers."""
    if chosen is None or validation is None:
        return False, "NOT MET: no student finished training inside the budget", {}
    checks: dict[str, Any] = {}
    speedup = validation.get("speedup")
    if config.target_speedup is not None:
        checks["speedup"] = {
            "target": config.target_speedup,
            "measured": speedup,
            "met": speedup is not None and speedup >= config.target_speedup,
        }
    if config.accuracy_target == "ratio":
        ratio = validation.get("force_error_ratio")
        checks["force_error_ratio"] = {
            "target": config.max_force_error_ratio,
            "measured": ratio,
            "met": ratio is not None and ratio <= config.max_force_error_ratio,
        }
    elif config.accuracy_target == "rmse":
        rmse = validation.get("force_rmse_mev")
        checks["force_rmse_mev"] = {
            "target": config.max_force_rmse_mev,
            "measured": rmse,
            "met": rmse is not None and rmse <= config.max_force_rmse_mev,
        }
    md_ok = not validation.get("md_failed")
    checks["stable_md"] = {"target": True, "measured": md_ok, "met": md_ok}
    met = all(c["met"] for c in checks.values())
    parts = []
    if speedup is not None:
        parts.append(f"{speedup:.1f}x faster than the teacher")
    if validation.get("force_error_ratio") is not None:
        parts.append(f"force error {validation['force_error_ratio']:.2f}x the teacher's "
                     "against the reference")  # fmt: skip
    if validation.get("force_rmse_mev") is not None:
        parts.append(f"force RMSE {validation['force_rmse_mev']:.1f} meV/Å against the teacher")
    missed = [name for name, c in checks.items() if not c["met"]]
    head = "MET" if met else f"NOT MET ({', '.join(missed)})"
    return met, f"{head}: student {chosen}, " + ", ".join(parts) + " (held-out test data)", checks


def compress(
    teacher: Potential | str | Path,
    starts: Sequence[Atoms],
    out: str | Path,
    *,
    config: CompressConfig | None = None,
    reference: Sequence[Atoms] | None = None,
    reference_keys: LabelKeys | None = None,
    candidates: Sequence[Candidate] | None = None,
    progress: bool = True,
) -> CompressResult:
    """Sample, label, choose, train and validate a fast student of ``teacher`` for ``starts``.

    Args:
        teacher: a :class:`Potential` or a model file (loaded in float64).
        starts: start structures of the user's system (never modified).
        out: output folder; an existing run there with the same inputs is continued.
        config: targets, budget and sampling (default :class:`CompressConfig`).
        reference: labelled structures (e.g. DFT) to judge against; needed by
            ``max_force_error_ratio``.
        reference_keys: label names of ``reference``.
        candidates: the student ladder (default :func:`.ladder.default_ladder` of the teacher).
        progress: progress bars for every stage.

    Returns:
        A :class:`CompressResult`; ``met`` is False (with the best student found) when the
        targets were not met.

    Raises:
        CompressConfigError: bad settings, or a target that needs missing data.
        CompressStateError: ``out`` holds another run.
        UnknownElementError, StructureError: a start structure the teacher cannot evaluate.
        DataFileError: reference structures without the named labels.
        MDInstabilityError: the teacher's MD blew up while sampling.
    """
    from macelerate import load
    from macelerate.pipeline.report_card import write_report_card
    from macelerate.pipeline.validation import validate_student

    config = config or CompressConfig()
    teacher = teacher if isinstance(teacher, Potential) else load(teacher, dtype="float64")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_inputs(teacher, starts, reference, reference_keys, config)
    identity = {
        "config": config.to_dict(), "teacher": _teacher_identity(teacher),
        "starts_sha256": structures_sha256(starts),
        "reference_sha256": structures_sha256(reference) if reference else None,
        "reference_keys": None if reference_keys is None else vars(reference_keys),
    }  # fmt: skip
    state = CompressState(out, json.loads(json.dumps(identity)))
    state.finish("inputs", {"n_starts": len(starts), "resumed": state.resumed})
    splits = _labelled_splits(teacher, starts, config, out, state, progress)
    ladder = state.stage("ladder")
    if ladder is None:
        ladder = measure_ladder(
            teacher,
            candidates or default_ladder(teacher),
            starts[0],
            splits["train"],
            dtype=config.speed_dtype,
            repeats=config.timing_repeats,
            threads=config.threads,
            progress=progress,
        )
        state.finish("ladder", ladder)
    select_reference, judge_reference = _reference_halves(reference, config)
    chosen, records = _train_ladder(teacher, splits, ladder, select_reference, reference_keys,
                                    config, out, state, progress)  # fmt: skip
    validation = state.stage("validate")
    student_path = None
    if chosen is not None:
        source = Path(records[chosen]["student_file"])
        student_path = out / "student.pt"
        write_atomically(student_path, lambda tmp: shutil.copyfile(source, tmp))
        if validation is None:
            student = load(student_path, dtype="float64")
            result = validate_student(
                teacher, student, splits["test"], starts[0],
                reference=judge_reference or None, reference_keys=reference_keys,
                config=_validation_config(config),
                progress=progress,
            )  # fmt: skip
            validation = result.to_dict()
            state.finish("validate", validation)
    exported = state.stage("export")
    if exported is None and student_path is not None and config.export_metatomic:
        exported = export_student(student_path, out, dtype=config.speed_dtype)
        state.finish("export", exported)
    met, verdict, checks = _verdict(chosen, _headline(validation), config)
    summary = {
        "verdict": verdict, "met": met, "checks": checks,
        "teacher": _teacher_identity(teacher),
        "structure": {"formula": starts[0].get_chemical_formula(), "n_atoms": len(starts[0]),
                      "pbc": [bool(p) for p in starts[0].pbc]},
        "target": {"speedup": config.target_speedup,
                   "max_force_error_ratio": config.max_force_error_ratio,
                   "max_force_rmse_mev": config.max_force_rmse_mev},
        "config": config.to_dict(),
        "splits": {name: len(splits[name]) for name in SPLITS},
        "ladder": _ladder_rows(ladder, records, config),
        "chosen": chosen,
        "stages": {"spent_seconds": state.spent_seconds()},
        "validation": validation,
        "files": {"student": "student.pt" if student_path else None,
                  "metatomic": (exported or {}).get("metatomic", {}).get("file"),
                  "data": [f"data/{name}.xyz" for name in SPLITS]},
        "export": exported,
    }  # fmt: skip
    write_report_card(out, summary)
    text = json.dumps(summary, indent=1, default=str)
    write_atomically(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    state.finish("report", {"verdict": verdict, "met": met})
    return CompressResult(out=out, met=met, verdict=verdict, chosen=chosen,
                          student_path=student_path, summary=summary)  # fmt: skip


def _headline(validation: dict[str, Any] | None) -> dict[str, Any] | None:
    """The numbers the verdict needs, from a ``StudentValidation.to_dict()``."""
    if validation is None:
        return None
    return {
        "speedup": (validation.get("speed") or {}).get("speedup"),
        "force_error_ratio": validation.get("force_error_ratio"),
        "force_rmse_mev": (validation.get("vs_teacher") or {}).get("force_rmse_mev_per_a"),
        "md_failed": bool(validation.get("failed")),
    }


def _ladder_rows(
    ladder: Sequence[dict[str, Any]], records: dict[str, dict[str, Any]], config: CompressConfig
) -> list[dict[str, Any]]:
    from macelerate.pipeline.selection import fast_enough

    rows = []
    for entry in ladder:
        record = records.get(entry["name"], {})
        trained = bool(record.get("done"))
        rows.append({
            "name": entry["name"], "architecture": entry["architecture"],
            "ms_per_step": entry["ms_per_step"], "speedup": entry["speedup"],
            "trained": trained, "val_forces_rmse_mev": record.get("val_forces_rmse_mev"),
            "selection_force_ratio": record.get("selection_force_ratio"),
            "steps": record.get("steps"), "stop_reason": record.get("stop_reason"),
            "meets_speed": fast_enough(entry, config),
            "meets_accuracy": _accuracy_ok(record, config) if trained else None,
        })  # fmt: skip
    return rows
