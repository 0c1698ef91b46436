"""``import_mace`` leaves ``os.environ`` as it found it, and e3nn still works afterwards."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import os
os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
before = dict(os.environ)
from macelerate._mace import import_mace
import_mace()
assert dict(os.environ) == before, set(os.environ.items()) ^ set(before.items())
from macelerate.testing import tiny_mace  # e3nn constants were loaded at import: still usable
tiny_mace([1, 8], channels=4, num_interactions=1)
assert dict(os.environ) == before
print("ok")
"""


def test_import_mace_restores_the_environment():
    """Run in a fresh interpreter: mace is imported once per process."""
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
