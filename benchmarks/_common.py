"""Shared helpers for benchmark scripts: paths, environment record, result files."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def require_shared_data() -> Path:
    if not SHARED.is_dir():
        sys.exit(f"shared data folder {SHARED} is absent: these benchmarks need real models/data")
    return SHARED


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_commit() -> str:
    """The checked-out commit, ``+dirty`` if tracked files outside the results differ from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                                capture_output=True, check=True).stdout.strip()  # fmt: skip
        changed = ["git", "diff", "--quiet", "HEAD", "--", ".", ":!benchmarks/results"]
        dirty = subprocess.run(changed, cwd=ROOT).returncode != 0  # results files do not count
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    import ase
    import e3nn
    import mace
    import torch

    import macelerate

    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "git_commit": git_commit(),
        "device": f"cpu: {cpu_name()}, {os.cpu_count()} cores, "
        f"torch threads {torch.get_num_threads()}",
        "versions": {
            "macelerate": macelerate.__version__,
            "torch": str(torch.__version__),
            "mace-torch": mace.__version__,
            "e3nn": e3nn.__version__,
            "ase": ase.__version__,
            "python": platform.python_version(),
        },
    }


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = datetime.date.today().isoformat()
    path = RESULTS / f"{name}_cpu_{day}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path
