"""One measurement in its own process: ``python -m macelerate.bench.worker '<json spec>'``.

The parent (:mod:`macelerate.bench.suite`) starts one worker per (engine, model, size), so the
allocator state, caches and out-of-memory failures of one run never touch another. The worker
prints exactly one line starting with :data:`RESULT_PREFIX` followed by a JSON object: the
measured fields of a bench row (``status``, ``error``, ``n_atoms``, ``n_edges``,
``ms_per_step``, ``graph_ms``, ``peak_memory_mb``, ``memory_kind``) plus ``device_name``.

Spec keys: ``engine`` ("macelerate", "mace-torch" or "symmetrix"), ``model`` (path), ``structure``
(an ASE file holding one structure), ``device``, ``dtype``, ``lever``, ``repeats``, ``warmup``,
``stress`` (bool), ``memory_limit_gb`` (float or null), ``seed``, ``threads`` (int or null: the
worker's environment already carries ``OMP_NUM_THREADS``).
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from ase import Atoms

from macelerate.bench.memory import PeakMemoryTracker, is_out_of_memory, limit_address_space
from macelerate.bench.timing import time_callable

RESULT_PREFIX = "macelerate-bench-result: "
LEVERS: dict[str, dict[str, Any]] = {
    "exact": {},
    "unfused": {"fuse_message_passing": False},
    "conv-only": {"runtime": "conv-only"},
    "tabulated": {"radial": "tabulated"},
    "int8-readouts": {"readouts": "int8"},
}
"""Speed levers a macelerate run may pull, as options of :func:`macelerate.load`: ``exact`` is the
default runtime (results equal mace-torch's to rounding: :func:`macelerate.transforms.fuse`);
``unfused`` runs mace-torch's own interaction modules on macelerate's graphs; ``conv-only`` fuses
only the convolution (the runtime before the table-based contraction and dead-block skipping);
``tabulated`` adds tabulated radial MLPs (approximate); ``int8-readouts`` int8 readout weights
(approximate). ``precision:<preset>`` runs a precision
policy (:data:`macelerate.precision.PRESETS`; the bench ``dtype`` is then not used). Levers join
with ``+``, e.g. ``tabulated+precision:fp32``."""
PRECISION_LEVER = "precision:"


def lever_options(lever: str) -> dict[str, Any]:
    """The :func:`macelerate.load` options of a lever name; ValueError for unknown levers."""
    options: dict[str, Any] = {}
    for part in lever.split("+"):
        if part.startswith(PRECISION_LEVER):
            from macelerate.precision.policy import PRESETS

            preset = part.removeprefix(PRECISION_LEVER)
            if preset not in PRESETS:
                raise ValueError(
                    f"unknown precision preset {preset!r}; known: {', '.join(PRESETS)}"
                )
            options["precision"] = preset
        elif part in LEVERS:
            options.update(LEVERS[part])
        else:
            known = [*LEVERS, f"{PRECISION_LEVER}<preset>"]
            raise ValueError(f"unknown lever {part!r}; known: {', '.join(known)} (join with +)")
    return options


def _load_options(options: dict[str, Any]) -> dict[str, Any]:
    """Lever options -> :func:`macelerate.load` keywords."""
    options = dict(options)
    if options.pop("runtime", None) == "conv-only":
        from macelerate.runtime.accelerate import RuntimeOptions

        options["fuse_message_passing"] = RuntimeOptions(
            fast_products=False, skip_dead_blocks=False
        )
    return options


JITTER = 1e-3
"""Å, standard deviation of the random moves between steps (so nothing is reused)."""
MAX_ERROR_CHARS = 400


@dataclass(frozen=True)
class Engine:
    """What a worker times: a full step, the graph part alone (None if the engine does not
    expose it), and the graph's edge count."""

    step: Callable[[], object]
    graph: Callable[[], object] | None
    n_edges: int


def _macelerate_engine(spec: dict[str, Any], atoms: Atoms) -> Engine:
    from macelerate.models.loading import load

    options = lever_options(spec["lever"])
    dtype = None if "precision" in options else spec["dtype"]
    potential = load(spec["model"], device=spec["device"], dtype=dtype, **_load_options(options))
    stress = bool(spec["stress"]) and bool(atoms.pbc.all())
    n_edges = int(potential.build_graph(atoms)["edge_index"].shape[1])
    return Engine(
        step=lambda: potential.forward(potential.build_graph(atoms), compute_stress=stress),
        graph=lambda: potential.build_graph(atoms),
        n_edges=n_edges,
    )


def _mace_torch_engine(spec: dict[str, Any], atoms: Atoms) -> Engine:
    from macelerate._mace import import_mace

    import_mace()
    from mace.calculators import MACECalculator

    from macelerate.bench.peers import safe_mace_pickle

    model = safe_mace_pickle(spec["model"], out_dir=Path(spec["structure"]).parent)
    calc = MACECalculator(
        model_paths=str(model), device=spec["device"], default_dtype=spec["dtype"]
    )
    n_edges = int(calc._atoms_to_batch(atoms)["edge_index"].shape[1])
    # MACECalculator.calculate always computes energy, forces and stress (MACE model type).
    return Engine(
        step=lambda: calc.calculate(atoms, ["energy", "forces"]),
        graph=lambda: calc._atoms_to_batch(atoms),
        n_edges=n_edges,
    )


def _symmetrix_engine(spec: dict[str, Any], atoms: Atoms) -> Engine:
    from ase.calculators.calculator import all_changes

    from macelerate.bench.peers import symmetrix_model
    from macelerate.graph.neighbors import radius_graph
    from macelerate.models.loading import read_model_file

    model = symmetrix_model(spec["model"])
    from symmetrix import Symmetrix

    calc = Symmetrix(str(model), dtype=spec["dtype"])
    module: Any = read_model_file(spec["model"])[0]
    r_max = float(module.r_max)
    edges = radius_graph(atoms.positions, atoms.cell.array, atoms.pbc, cutoff=r_max)[0]
    return Engine(
        step=lambda: calc.calculate(atoms, ["energy", "forces"], all_changes),
        graph=None,
        n_edges=int(edges.shape[1]),
    )


BUILDERS: dict[str, Callable[[dict[str, Any], Atoms], Engine]] = {
    "macelerate": _macelerate_engine,
    "mace-torch": _mace_torch_engine,
    "symmetrix": _symmetrix_engine,
}
"""How each engine of :data:`macelerate.bench.schema.ENGINES` is built."""


def measure(spec: dict[str, Any], known: dict[str, Any] | None = None) -> dict[str, Any]:
    """Time one engine on one structure as ``spec`` says; returns the measured fields.

    Args:
        spec: the worker spec (see the module docstring).
        known: if given, receives ``n_atoms`` and ``n_edges`` as soon as they are known, so a
            run that fails later (out of memory, say) still reports its size.
    """
    import ase.io

    from macelerate._mace import quiet_model_construction

    known = {} if known is None else known
    atoms = cast(Atoms, ase.io.read(spec["structure"], index=0))
    known["n_atoms"] = len(atoms)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    builder = BUILDERS[spec["engine"]]
    with quiet_model_construction():
        engine = builder(spec, atoms)
    known["n_edges"] = engine.n_edges
    if spec.get("memory_limit_gb"):
        limit_address_space(float(spec["memory_limit_gb"]))
    start = atoms.positions.copy()
    rng = np.random.default_rng(spec.get("seed", 0))

    def move() -> None:
        atoms.positions = start + rng.normal(scale=JITTER, size=start.shape)

    tracker = PeakMemoryTracker(spec["device"])
    step = time_callable(
        engine.step,
        warmup=spec["warmup"],
        repeats=spec["repeats"],
        device=spec["device"],
        before=move,
        on_timed_start=tracker.reset,
    )
    memory = tracker.read()
    graph = (
        time_callable(
            engine.graph, warmup=1, repeats=spec["repeats"], device=spec["device"], before=move
        )
        if engine.graph is not None
        else None
    )
    return {
        "status": "ok",
        "error": None,
        "n_atoms": len(atoms),
        "n_edges": engine.n_edges,
        "ms_per_step": step.summary(),
        "graph_ms": graph.summary() if graph is not None else None,
        "peak_memory_mb": memory.peak_mb,
        "memory_kind": memory.kind,
        "device_name": device_name(spec["device"]),
    }


def device_name(device: str | torch.device) -> str:
    """The GPU's name, or the CPU model from ``/proc/cpuinfo``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


def failure(error: BaseException) -> dict[str, Any]:
    """The result of a run that raised: status ``"oom"`` for memory exhaustion, else ``"error"``."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    message = f"{type(error).__name__}: {lines[-1] if lines else ''}".strip()
    status = "oom" if is_out_of_memory(error) else "error"
    return {"status": status, "error": message[:MAX_ERROR_CHARS]}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the spec given as the one argument; print one result line; exit 0 unless killed."""
    argv = list(sys.argv[1:] if argv is None else argv)
    spec = json.loads(argv[0])
    known: dict[str, Any] = {}
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the result line
            result = measure(spec, known)
    except Exception as error:  # the parent records every failure as a result row
        result = {**known, **failure(error)}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
