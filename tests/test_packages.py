"""Every subpackage exports a curated ``__all__``; importing the packages is side-effect free."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = (
    "macelerate", "macelerate.bench", "macelerate.checks", "macelerate.cli",
    "macelerate.compress", "macelerate.data", "macelerate.demo", "macelerate.export",
    "macelerate.graph", "macelerate.mace", "macelerate.models", "macelerate.pipeline",
    "macelerate.precision", "macelerate.report", "macelerate.train",
)  # fmt: skip
LAZY = ("macelerate", "macelerate.bench", "macelerate.cli", "macelerate.demo",
        "macelerate.export", "macelerate.mace", "macelerate.models", "macelerate.pipeline",
        "macelerate.train")  # fmt: skip


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_name_resolves(name):
    package = importlib.import_module(name)
    assert package.__doc__ and package.__all__
    for public in package.__all__:
        assert getattr(package, public) is not None, public
    assert set(package.__all__) <= set(dir(package))


def test_importing_the_packages_imports_no_heavy_dependency():
    script = (
        "import sys\n"
        f"for name in {LAZY + ('macelerate.data', 'macelerate.graph', 'macelerate.report')!r}:\n"
        "    __import__(name)\n"
        "heavy = ('mace', 'e3nn', 'matplotlib', 'macelerate.models.potential')\n"
        "print(sorted(name for name in heavy if name in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
