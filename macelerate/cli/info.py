"""``macelerate info MODEL``: what a model is."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="describe a model (elements, cutoff, irreps, size)")
    parser.add_argument(
        "model", help="mace-torch .model file (no code from it runs) or macelerate checkpoint"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from macelerate.models.info import describe
    from macelerate.models.loading import load

    facts = describe(load(args.model, dtype=None))
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    rows = {}
    for key, value in facts.items():
        if isinstance(value, dict):  # a student's extras: one row per field
            rows.update({f"{key}.{inner}": item for inner, item in value.items()})
        else:
            rows[key] = value
    width = max(len(key) for key in rows)
    for key, value in rows.items():
        print(f"{key:<{width}}  {value}")
    return 0
