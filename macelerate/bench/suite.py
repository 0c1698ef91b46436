"""``run_bench``: every (model, size, engine) of a :class:`BenchSpec`, each in a fresh process.

The parent builds each structure once per (model, size), writes it to a temporary ASE file and
starts ``python -m macelerate.bench.worker`` per engine; the worker's one JSON line becomes a
:class:`~macelerate.bench.schema.BenchResult`. A worker killed by a signal (the kernel's OOM
killer sends SIGKILL) or one that reports exhausted memory gives status ``"oom"``; one that runs
past the timeout or fails otherwise gives ``"error"`` with the reason. The JSON form is
documented in ``SCHEMA.md``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
from ase.data import chemical_symbols

from macelerate._dtypes import MODEL_DTYPES
from macelerate.bench.memory import is_out_of_memory
from macelerate.bench.schema import REFERENCE_ENGINES, SPREAD_LIMIT, BenchResult, timing_spread
from macelerate.bench.systems import SYSTEMS, BuiltSystem, build_system, repeat_structure
from macelerate.bench.worker import LEVERS, RESULT_PREFIX, lever_options
from macelerate.errors import MacelerateError, UnknownElementError


class BenchSpecError(MacelerateError, ValueError):
    """Benchmark options that cannot work together (or at all)."""


@dataclass(frozen=True)
class BenchSpec:
    """What to measure.

    Attributes:
        models: model files, as given (mace-torch ``.model`` files or macelerate checkpoints).
        sizes: atom counts wanted; each system is built to at least that many atoms.
        system: a built-in system (:data:`~macelerate.bench.systems.SYSTEMS`), unless
            ``structure`` is given.
        structure: an ASE-readable file whose first frame is repeated to each size.
        device: ``"cpu"`` or ``"cuda"`` (``"cuda:1"``...).
        dtype: ``"float64"`` or ``"float32"``, for both engines.
        levers: macelerate speed levers to time: ``"exact"``, ``"unfused"``, or
            ``"precision:<preset>"`` (a :data:`~macelerate.precision.PRESETS` name).
        repeats: timed steps per run.
        warmup: untimed steps before them.
        stress: macelerate computes stress too (periodic structures); mace-torch always does.
        references: reference engines timed beside macelerate: ``"mace-torch"`` (its
            ``MACECalculator``) and/or ``"symmetrix"`` (Symmetrix-XL, optional extra ``peers``).
        threads: CPU threads per worker (``torch.set_num_threads`` and ``OMP_NUM_THREADS``);
            None keeps the environment's setting.
        memory_limit_gb: GiB of virtual address space per worker (RLIMIT_AS), CPU only.
        timeout_s: seconds a worker may run before it is killed (status ``"error"``).
        seed: seed of the built systems and of the moves between steps.
    """

    models: tuple[str, ...]
    sizes: tuple[int, ...] = (64, 512, 1000)
    system: str = "dense-solid"
    structure: str | None = None
    device: str = "cpu"
    dtype: str = "float64"
    levers: tuple[str, ...] = ("exact",)
    repeats: int = 5
    warmup: int = 3
    stress: bool = False
    references: tuple[str, ...] = ("mace-torch",)
    threads: int | None = None
    memory_limit_gb: float | None = None
    timeout_s: float = 1800.0
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not self.models:
            problems.append("give at least one model")
        if not self.sizes or min(self.sizes) < 1:
            problems.append(f"sizes must be positive atom counts, got {list(self.sizes)}")
        if self.structure is None and self.system not in SYSTEMS:
            problems.append(f"unknown system {self.system!r}; choose one of {', '.join(SYSTEMS)}")
        if self.dtype not in MODEL_DTYPES:
            problems.append(f"dtype must be one of {', '.join(MODEL_DTYPES)}, got {self.dtype!r}")
        if not self.device.startswith(("cpu", "cuda")):
            problems.append(f"device must be cpu or cuda, got {self.device!r}")
        for lever in self.levers:
            try:
                lever_options(lever)
            except ValueError as error:
                problems.append(str(error))
        if not self.levers:
            problems.append(f"give at least one lever ({', '.join(LEVERS)}, precision:<preset>)")
        unknown = [name for name in self.references if name not in REFERENCE_ENGINES]
        if unknown:
            problems.append(
                f"unknown reference engine(s) {unknown}; choose from {', '.join(REFERENCE_ENGINES)}"
            )
        if self.threads is not None and self.threads < 1:
            problems.append(f"threads must be >= 1, got {self.threads}")
        if self.repeats < 1 or self.warmup < 0:
            problems.append("repeats must be >= 1 and warmup >= 0")
        if self.memory_limit_gb is not None and self.memory_limit_gb <= 0:
            problems.append(f"the memory limit must be positive, got {self.memory_limit_gb} GB")
        if self.memory_limit_gb is not None and self.device.startswith("cuda"):
            problems.append(
                "a memory limit caps host address space, which CUDA needs in bulk; "
                "drop --memory-limit-gb with --device cuda"
            )
        if self.timeout_s <= 0:
            problems.append(f"the timeout must be positive, got {self.timeout_s} s")
        if problems:
            raise BenchSpecError("; ".join(problems))


@dataclass(frozen=True)
class _ModelFacts:
    atomic_numbers: tuple[int, ...]
    kind: str


def _model_facts(path: str) -> _ModelFacts:
    """Elements and file kind of a model (raises ModelFileError for bad files)."""
    from macelerate._mace import quiet_model_construction
    from macelerate.models.loading import read_model_file

    with quiet_model_construction():
        module, source = read_model_file(path)
    atomic_numbers: Any = module.atomic_numbers  # a buffer (macelerate.mace.contract)
    return _ModelFacts(tuple(int(z) for z in atomic_numbers), source.kind)


def model_labels(models: Sequence[str]) -> list[str]:
    """Short, distinct names: file stems, else file names, else parent/name, else the paths."""
    for name in (
        lambda p: p.stem,
        lambda p: p.name,
        lambda p: f"{p.parent.name}/{p.name}",
        lambda p: str(p),
    ):
        labels = [name(Path(m)) for m in models]
        if len(set(labels)) == len(set(models)):
            return labels
    return list(models)


def _structures(spec: BenchSpec, facts: _ModelFacts, model: str) -> list[BuiltSystem]:
    if spec.structure is None:
        return [
            build_system(spec.system, facts.atomic_numbers, n, seed=spec.seed) for n in spec.sizes
        ]
    from macelerate.data.labels import read_structures

    atoms = read_structures(spec.structure, index="0")[0]
    missing = sorted(set(atoms.numbers.tolist()) - set(facts.atomic_numbers))
    if missing:
        raise UnknownElementError(
            f"{spec.structure} holds {[chemical_symbols[z] for z in missing]}, which model "
            f"{model} does not know (it has {[chemical_symbols[z] for z in facts.atomic_numbers]}"
            "); give a structure of those elements or use --system"
        )
    return [repeat_structure(atoms, n, name=f"file:{spec.structure}") for n in spec.sizes]


def _worker_spec(spec: BenchSpec, model: str, structure: Path, engine: str, lever: str) -> dict:
    return {
        "engine": engine, "model": str(model), "structure": str(structure),
        "device": spec.device, "dtype": spec.dtype, "lever": lever, "repeats": spec.repeats,
        "warmup": spec.warmup, "stress": spec.stress, "memory_limit_gb": spec.memory_limit_gb,
        "seed": spec.seed, "threads": spec.threads,
    }  # fmt: skip


def run_worker(worker_spec: dict[str, Any], *, timeout_s: float) -> dict[str, Any]:
    """Run one worker process and return its measured fields (or the failure as a result)."""
    command = [sys.executable, "-m", "macelerate.bench.worker", json.dumps(worker_spec)]
    env = dict(os.environ)
    if worker_spec.get("threads"):
        env["OMP_NUM_THREADS"] = str(worker_spec["threads"])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timeout after {timeout_s:g} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = " | ".join(done.stderr.strip().splitlines()[-3:])[-400:]
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name
        killed = -done.returncode == signal.SIGKILL
        status = "oom" if killed or is_out_of_memory(tail) else "error"
        return {
            "status": status,
            "error": f"worker killed by {name}" + (f": {tail}" if tail else ""),
        }
    limited = worker_spec.get("memory_limit_gb") and "Thread creation failed" in tail
    status = "oom" if is_out_of_memory(tail) or limited else "error"
    return {"status": status, "error": f"worker exited with code {done.returncode}: {tail}"}


def _row(
    model: str, label: str, engine: str, lever: str, built: BuiltSystem, fields: dict
) -> BenchResult:
    ms, n_edges = fields.get("ms_per_step"), fields.get("n_edges")
    spread = timing_spread(ms)
    n_atoms = int(fields.get("n_atoms") or len(built.atoms))
    return BenchResult(
        model=model, model_label=label, engine=engine, lever=lever, system=built.label,
        n_atoms=n_atoms, status=fields["status"], error=fields.get("error"), n_edges=n_edges,
        mean_neighbors=n_edges / n_atoms if n_edges is not None else None, ms_per_step=ms,
        steps_per_s=1000.0 / ms["median"] if ms else None, graph_ms=fields.get("graph_ms"),
        peak_memory_mb=fields.get("peak_memory_mb"), memory_kind=fields.get("memory_kind"),
        ms_spread=spread, unreliable=None if spread is None else spread > SPREAD_LIMIT,
    )  # fmt: skip


def _measure(
    spec: BenchSpec, model: str, facts: _ModelFacts, structure: Path, engine: str, lever: str
) -> dict[str, Any]:
    """One worker's fields, or the reason the reference engine cannot run this model."""
    if engine in REFERENCE_ENGINES and facts.kind not in ("mace-pickle", "checkpoint"):
        return {
            "status": "error",
            "error": f"reference engines run plain mace-torch models; {model} is a "
            f"{facts.kind}; pass the original .model file to compare, or --reference none",
        }
    return run_worker(_worker_spec(spec, model, structure, engine, lever), timeout_s=spec.timeout_s)


def run_bench(
    spec: BenchSpec, *, on_result: Callable[[BenchResult], None] | None = None
) -> tuple[list[BenchResult], str | None]:
    """Measure every (model, size, engine, lever) of ``spec``, one worker process each.

    Models and structures are all checked first, so bad input fails before any timing.

    Args:
        spec: what to measure.
        on_result: called with each row as soon as it is measured (progress output).

    Returns:
        The result rows, and the device name the workers reported (``None`` if none ran).

    Raises:
        ModelFileError, DataFileError, StructureError: bad models, structure files or systems.
    """
    labels = model_labels(spec.models)
    facts = [_model_facts(model) for model in spec.models]
    structures = [_structures(spec, f, model) for f, model in zip(facts, spec.models)]
    runs = [("macelerate", lever) for lever in spec.levers]
    runs += [(engine, "exact") for engine in spec.references]
    results: list[BenchResult] = []
    device: str | None = None
    with tempfile.TemporaryDirectory(prefix="macelerate-bench-") as tmp:
        for m, (model, label) in enumerate(zip(spec.models, labels)):
            for s, built in enumerate(structures[m]):
                path = Path(tmp) / f"model{m}_size{s}.traj"
                ase.io.write(path, built.atoms)
                for engine, lever in runs:
                    fields = _measure(spec, model, facts[m], path, engine, lever)
                    device = device or fields.get("device_name")
                    results.append(_row(model, label, engine, lever, built, fields))
                    if on_result is not None:
                        on_result(results[-1])
    return results, device
