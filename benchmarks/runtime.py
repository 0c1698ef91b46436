"""macelerate's runtime against the engines a user would pick instead, in one interleaved run.

Engines (each run in its own worker process, ``macelerate.bench.worker``):

* ``main@<commit>``: macelerate as it was at a baseline commit (``--baseline PATH``: a checkout of
  that commit; its own worker runs with ``PYTHONPATH=PATH``), exact path (``baseline``) and
  tabulated lever (``baseline-tabulated``);
* ``macelerate exact``: this checkout's default runtime (``load()``: fused convolution,
  table-based symmetric contraction, dead-block skipping);
* ``macelerate tabulated``: plus tabulated radial MLPs (approximate; error measured separately by
  ``benchmarks/tabulated_accuracy.py``);
* ``symmetrix``: Symmetrix-XL (C++; ``pip install '.[peers]'``), on the JSON export of the same
  model (converted once, cached);
* ``mace-torch``: mace-torch's ``MACECalculator``.

Every (system, size, dtype, threads) case runs all engines in turn, ``--rounds`` times, so slow
drifts of a shared machine hit every engine alike; the table gives each engine's median over rounds
of its per-run median ms/step, and ratios against macelerate exact. Energy + forces, no stress.

    python benchmarks/runtime.py --baseline /tmp/main_1d92d09   # results/runtime_cpu_DATE.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import ase.io

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, require_shared_data, write_result  # noqa: E402

from macelerate.bench.suite import run_worker  # noqa: E402
from macelerate.bench.systems import repeat_structure  # noqa: E402

CASES = {
    # name: (model, data file, frame, [(sizes, dtypes, threads, rounds)])
    "go": ("go_mace_tutorial/GO_10pct_MACE_swa.model", "go_mace_tutorial/test-10.xyz", 0,
           [((168,), ("float32", "float64"), (1, 2), 2), ((1000,), ("float32", "float64"), (2,), 1),
            ((5000,), ("float32",), (2,), 1)]),
    "gst": ("gst_mace_pr325/mace_swa.model", "gst_mace_pr325/validate.xyz", 0,
            [((81, 648), ("float32", "float64"), (2,), 1)]),
    "solvent": ("mace_solvent_xtb_tutorial/mace01_swa.model",
                "solvent_xtb_tutorial/solvent_xtb_test.xyz", 199,
                [((87,), ("float32", "float64"), (2,), 1)]),
}  # fmt: skip
ENGINES = ("baseline", "exact", "baseline-tabulated", "tabulated", "symmetrix", "mace-torch")


def _spec(engine: str, model: Path, structure: Path, dtype: str, threads: int, args) -> dict:
    worker_engine = {"baseline": "macelerate", "exact": "macelerate", "tabulated": "macelerate",
                     "baseline-tabulated": "macelerate"}  # fmt: skip
    lever = "tabulated" if engine.endswith("tabulated") else "exact"
    return {
        "engine": worker_engine.get(engine, engine), "model": str(model),
        "structure": str(structure), "device": "cpu", "dtype": dtype, "lever": lever,
        "repeats": args.repeats, "warmup": args.warmup, "stress": False,
        "memory_limit_gb": None, "seed": 0, "threads": threads,
    }  # fmt: skip


def _run(engine: str, spec: dict, args) -> dict[str, Any]:
    saved = os.environ.get("PYTHONPATH")
    os.environ["OMP_NUM_THREADS"] = str(spec["threads"])
    if engine.startswith("baseline"):
        os.environ["PYTHONPATH"] = args.baseline
    try:
        return run_worker(spec, timeout_s=args.timeout)
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def _structure(data: Path, file: str, frame: int, n_atoms: int, tmp: Path) -> tuple[Path, int]:
    atoms = ase.io.read(data / file, frame)
    built = repeat_structure(atoms, n_atoms, name=file).atoms if n_atoms > len(atoms) else atoms
    path = tmp / f"{Path(file).stem}_{len(built)}.xyz"
    ase.io.write(path, built)
    return path, len(built)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=None, help="checkout of the baseline commit")
    parser.add_argument("--baseline-label", default="main@1d92d09")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--name", default="runtime", help="results/NAME_cpu_DATE.json")
    parser.add_argument("--max-atoms", type=int, default=None, help="skip larger sizes")
    args = parser.parse_args()
    data = require_shared_data()
    engines = [e for e in args.engines.split(",") if not e.startswith("baseline") or args.baseline]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        # Workers run ``python -m``, which puts the working folder first on sys.path: run them
        # from an empty folder, so the baseline's PYTHONPATH (not this checkout) is what imports.
        os.chdir(tmp)
        for case in args.cases.split(","):
            model_file, data_file, frame, plans = CASES[case]
            model = data / "models" / model_file
            for sizes, dtypes, thread_counts, rounds in plans:
                for size in sizes:
                    if args.max_atoms is not None and size > args.max_atoms:
                        continue
                    structure, n_atoms = _structure(data, data_file, frame, size, tmp)
                    for dtype in dtypes:
                        for threads in thread_counts:
                            for round_ in range(rounds):
                                for engine in engines:
                                    spec = _spec(engine, model, structure, dtype, threads, args)
                                    fields = _run(engine, spec, args)
                                    row = {"case": case, "model": model_file,
                                           "n_atoms": n_atoms, "dtype": dtype,
                                           "threads": threads, "round": round_,
                                           "engine": engine, **fields}  # fmt: skip
                                    rows.append(row)
                                    ms = (fields.get("ms_per_step") or {}).get("median")
                                    print(f"{case} {n_atoms} {dtype} {threads}t r{round_} "
                                          f"{engine}: {fields['status']} {ms}",
                                          file=sys.stderr, flush=True)  # fmt: skip
    summary = summarise(rows, args.baseline_label)
    write_result(args.name, {"environment": environment(), "rows": rows, "summary": summary})
    print(markdown(summary, args.baseline_label))


def summarise(rows: list[dict[str, Any]], baseline_label: str) -> list[dict[str, Any]]:
    """Per case: each engine's median over rounds of its median ms/step, and ratios."""
    keys = sorted({(r["case"], r["n_atoms"], r["dtype"], r["threads"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2], k[3]))  # fmt: skip
    out = []
    for case, n_atoms, dtype, threads in keys:
        entry: dict[str, Any] = {"case": case, "n_atoms": n_atoms, "dtype": dtype,
                                 "threads": threads, "ms": {}, "errors": {}}  # fmt: skip
        for engine in ENGINES:
            mine = [r for r in rows if (r["case"], r["n_atoms"], r["dtype"], r["threads"]) ==
                    (case, n_atoms, dtype, threads) and r["engine"] == engine]  # fmt: skip
            times = [r["ms_per_step"]["median"] for r in mine if r["status"] == "ok"]
            if times:
                entry["ms"][engine] = statistics.median(times)
                entry.setdefault("ms_range", {})[engine] = [min(times), max(times)]
            elif mine:
                entry["errors"][engine] = mine[0].get("error")
        out.append(entry)
    return out


def markdown(summary: list[dict[str, Any]], baseline_label: str) -> str:
    names = {"baseline": baseline_label, "exact": "macelerate exact",
             "baseline-tabulated": f"{baseline_label} tabulated",
             "tabulated": "macelerate tabulated", "symmetrix": "Symmetrix-XL",
             "mace-torch": "MACECalculator"}  # fmt: skip
    header = ["system", "atoms", "dtype", "threads", *[f"{names[e]} ms" for e in ENGINES],
              "exact vs main", "tabulated vs main", "exact vs mace", "exact vs symmetrix",
              "tabulated vs symmetrix"]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in summary:
        ms = e["ms"]

        def ratio(a: str, b: str, ms: dict = ms) -> str:
            return f"{ms[b] / ms[a]:.2f}x" if a in ms and b in ms else "—"

        cells = [e["case"], str(e["n_atoms"]), e["dtype"], str(e["threads"])]
        cells += [f"{ms[k]:.1f}" if k in ms else ("error" if k in e["errors"] else "—")
                  for k in ENGINES]  # fmt: skip
        cells += [ratio("exact", "baseline"), ratio("tabulated", "baseline-tabulated"),
                  ratio("exact", "mace-torch"),
                  ratio("exact", "symmetrix"), ratio("tabulated", "symmetrix")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
