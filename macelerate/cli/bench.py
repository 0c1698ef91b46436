"""``macelerate bench MODEL [MODEL ...]``: time and memory per MD step against mace-torch."""

from __future__ import annotations

import argparse
import shlex
import sys

from macelerate.bench.schema import SPREAD_LIMIT
from macelerate.bench.systems import SYSTEMS
from macelerate.cli.common import add_subcommand

DEFAULT_SIZES = "64,512,1000"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = add_subcommand(
        subparsers,
        "bench",
        help="ms per energy+forces step and peak memory, macelerate vs mace-torch",
        description="ms per energy+forces step and peak memory, macelerate vs mace-torch.\n"
        "Each (engine, model, size) runs in a fresh process; see macelerate/bench/SCHEMA.md\n"
        "for the --json file.",
        epilog=f"Runs whose slowest timed step took over {SPREAD_LIMIT:g}x their fastest are "
        "marked '!'\n(machine busy: figures unreliable) and have \"unreliable\": true in the JSON.",
    )
    parser.add_argument("models", nargs="+", metavar="MODEL", help="model files")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--structure", metavar="FILE", help="repeat this structure (first frame) to each size"
    )
    where.add_argument(
        "--system", choices=SYSTEMS, default=None, help="built-in system (default: dense-solid)"
    )
    parser.add_argument(
        "--atoms", default=DEFAULT_SIZES, help="atom counts to time, comma-separated"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--dtype",
        default="float64",
        choices=["float64", "float32"],
        help="precision of both engines",
    )
    parser.add_argument(
        "--lever",
        default="exact",
        help="macelerate levers, comma-separated: exact, unfused, conv-only, tabulated, "
        "int8-readouts, "
        "precision:<preset>; join levers with + (tabulated+precision:fp32)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per run")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed steps before them (e3nn warms up)"
    )
    parser.add_argument("--stress", action="store_true", help="macelerate computes stress too")
    parser.add_argument(
        "--reference",
        default="mace-torch",
        help="reference engines, comma-separated: mace-torch (its MACECalculator), symmetrix "
        "(Symmetrix-XL: pip install 'macelerate[peers]'), or none",
    )
    parser.add_argument("--no-reference", action="store_true", help="same as --reference none")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="CPU threads per run (torch and OMP_NUM_THREADS; default: the environment's)",
    )  # fmt: skip
    parser.add_argument(
        "--memory-limit-gb", default="auto", metavar="G",
        help="virtual memory cap per worker in GiB, or 'none' (default auto: 90%% of RAM on cpu)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds a run may take before it is killed"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the systems and step moves")
    parser.add_argument("--json", metavar="OUT", default=None, help="write the results file")
    parser.add_argument(
        "--markdown", action="store_true", help="print a Markdown table instead of plain text"
    )
    parser.set_defaults(run=run)


def _sizes(text: str) -> tuple[int, ...]:
    from macelerate.bench.suite import BenchSpecError

    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BenchSpecError(f"--atoms takes comma-separated integers, got {text!r}") from None


def _references(args: argparse.Namespace) -> tuple[str, ...]:
    if args.no_reference:
        return ()
    names = tuple(part.strip() for part in args.reference.split(",") if part.strip())
    return () if names == ("none",) else names


def _memory_limit(text: str, device: str) -> float | None:
    from macelerate.bench.memory import physical_memory_gb
    from macelerate.bench.suite import BenchSpecError

    if text == "none":
        return None
    if text == "auto":
        total = physical_memory_gb()
        return round(0.9 * total, 1) if total and not device.startswith("cuda") else None
    try:
        return float(text)
    except ValueError:
        raise BenchSpecError(
            f"--memory-limit-gb takes GiB, 'auto' or 'none', got {text!r}"
        ) from None


def _command(args: argparse.Namespace, spec) -> str:
    """The command line that repeats this run, every option spelled out."""
    where = ["--structure", spec.structure] if spec.structure else ["--system", spec.system]
    limit = "none" if spec.memory_limit_gb is None else f"{spec.memory_limit_gb:g}"
    words = ["macelerate", "bench", *spec.models, *where,
             "--atoms", ",".join(map(str, spec.sizes)), "--device", spec.device,
             "--dtype", spec.dtype, "--lever", ",".join(spec.levers),
             "--repeats", str(spec.repeats), "--warmup", str(spec.warmup),
             "--memory-limit-gb", limit,
             "--timeout", f"{spec.timeout_s:g}", "--seed", str(spec.seed)]  # fmt: skip
    words += ["--stress"] if spec.stress else []
    words += ["--reference", ",".join(spec.references) or "none"]
    words += ["--threads", str(spec.threads)] if spec.threads else []
    words += ["--json", args.json] if args.json else []
    words += ["--markdown"] if args.markdown else []
    return shlex.join(words)


def _progress(row) -> None:
    timing = f"{row.ms_per_step['median']:.2f} ms/step" if row.ms_per_step else row.error
    if row.unreliable:
        timing += f" (slowest step {row.ms_spread:.1f}x the fastest: machine busy)"
    print(
        f"  {row.model_label} {row.system} {row.n_atoms} atoms {row.engine}: {row.status} {timing}",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    from macelerate.bench.results import (
        bench_payload,
        markdown_table,
        text_table,
        unreliable_rows,
    )
    from macelerate.bench.suite import BenchSpec, run_bench
    from macelerate.cli.common import write_json

    spec = BenchSpec(
        models=tuple(args.models), sizes=_sizes(args.atoms),
        system=args.system or "dense-solid", structure=args.structure, device=args.device,
        dtype=args.dtype, levers=tuple(args.lever.split(",")), repeats=args.repeats,
        warmup=args.warmup, stress=args.stress, references=_references(args),
        threads=args.threads,
        memory_limit_gb=_memory_limit(args.memory_limit_gb, args.device),
        timeout_s=args.timeout, seed=args.seed,
    )  # fmt: skip
    results, device_name = run_bench(spec, on_result=_progress)
    payload = bench_payload(spec, results, command=_command(args, spec), device_name=device_name)
    if args.json:
        write_json(args.json, payload)
    print(markdown_table(payload) if args.markdown else text_table(payload))
    busy = unreliable_rows(payload)
    if busy:
        print(
            f"macelerate bench: warning: {len(busy)} of {len(payload['results'])} runs spread "
            f"over {SPREAD_LIMIT:g}x between their fastest and slowest step (machine busy: "
            "figures unreliable); rerun on a quiet machine or with more --repeats",
            file=sys.stderr,
        )
    return 0
