"""Every Python block of the README runs as pasted.

The blocks read ``model.model`` (a mace-torch model file) and ``frames.xyz`` (a few periodic
structures of its elements) from the working folder; the test makes both in a temporary folder
(a tiny random MACE and rattled silicon cells) and runs the blocks there, in order, in one
namespace, as a reader pasting them into one Python session would.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def python_blocks() -> list[str]:
    """The README's ```python blocks, in order."""
    return BLOCK.findall(README.read_text())


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


def test_every_python_block_runs(tiny_model, tmp_path, monkeypatch, capsys):
    torch.save(tiny_model, tmp_path / "model.model")  # saved the way mace-torch saves models
    frames = []
    for seed in range(3):
        atoms = bulk("Si", "diamond", a=5.43, cubic=True)
        atoms.rattle(0.05, rng=np.random.default_rng(seed))
        frames.append(atoms)
    write(tmp_path / "frames.xyz", frames)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for number, block in enumerate(python_blocks(), start=1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as error:  # pragma: no cover - the failure message is the point
            pytest.fail(f"README python block {number} failed: {type(error).__name__}: {error}")
    capsys.readouterr()
