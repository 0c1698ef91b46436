"""The engines a user would pick instead of macelerate, prepared so that they read safe files.

* ``mace-torch``: mace-torch's own ``MACECalculator`` (always available);
* ``symmetrix``: Symmetrix-XL, a C++ MACE engine (optional: ``pip install 'macelerate[peers]'``),
  which reads a JSON export made by its ``symmetrix_extract_mace`` command.

Both read mace-torch ``.model`` pickles with a plain ``torch.load``, which runs code named in the
file. They are therefore never given the user's file: macelerate reads it with its allow-listed
loader (:mod:`macelerate.models.mace_pickle`, which rebuilds the model and runs nothing from the
file), and hands them a pickle of that rebuilt model, written by macelerate. The Symmetrix export
is made once per (model, Symmetrix version) and cached under ``$MACELERATE_CACHE`` (default
``~/.cache/macelerate``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from macelerate.atomic_io import write_atomically
from macelerate.errors import MacelerateError
from macelerate.mace.contract import MODEL_CLASSES
from macelerate.models.checkpoint import file_sha256

PEER_ENGINES = ("mace-torch", "symmetrix")
INSTALL_HINT = "pip install 'macelerate[peers]' (symmetrix-xl and matscipy)"


class PeerEngineError(MacelerateError, RuntimeError):
    """A reference engine that is not installed or cannot read this model."""


def cache_dir() -> Path:
    """Where converted peer files are kept (``$MACELERATE_CACHE`` or ``~/.cache/macelerate``)."""
    root = os.environ.get("MACELERATE_CACHE") or Path.home() / ".cache" / "macelerate"
    return Path(root)


def symmetrix_version() -> str:
    """The installed Symmetrix-XL version.

    Raises:
        PeerEngineError: Symmetrix-XL is not installed.
    """
    try:
        from importlib.metadata import version

        return version("symmetrix-xl")
    except Exception as error:
        raise PeerEngineError(f"Symmetrix-XL is not installed: {INSTALL_HINT}") from error


def safe_mace_pickle(model_path: str | Path, *, out_dir: Path) -> Path:
    """A ``.model`` pickle of ``model_path``'s model as macelerate rebuilt it (nothing from the
    original file runs, now or when a peer engine loads the copy).

    Raises:
        ModelFileError: the file is not a model macelerate reads.
        PeerEngineError: it is not a mace-torch model (a student, a TorchScript export).
    """
    from macelerate._mace import model_construction
    from macelerate.models.loading import read_model_file

    with model_construction():
        module, source = read_model_file(model_path)
    if source.kind not in ("mace-pickle", "checkpoint") or type(module).__name__ not in (
        MODEL_CLASSES
    ):
        raise PeerEngineError(
            f"{model_path} is a {source.kind} holding a {type(module).__name__}; reference "
            "engines run plain mace-torch models only"
        )
    digest = file_sha256(model_path)[:16]
    path = out_dir / f"{Path(model_path).stem}-{digest}.model"
    if not path.exists():
        write_atomically(path, lambda tmp: torch.save(module, tmp))
    return path


def symmetrix_model(model_path: str | Path, *, timeout_s: float = 1800.0) -> Path:
    """The Symmetrix-XL JSON export of ``model_path``, converted once and cached.

    Raises:
        PeerEngineError: Symmetrix-XL is missing, or its converter failed (its message included).
    """
    folder = cache_dir() / "symmetrix" / symmetrix_version()
    folder.mkdir(parents=True, exist_ok=True)
    digest = file_sha256(model_path)[:16]
    target = folder / f"{Path(model_path).stem}-{digest}.json"
    if target.exists():
        return target
    source = safe_mace_pickle(model_path, out_dir=folder)
    tmp = target.with_suffix(".partial.json")
    command = [
        sys.executable, "-c",
        "import sys; from symmetrix.cli.extract_mace import main; sys.exit(main())",
        "--model", str(source), "--output", str(tmp),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0 or not tmp.exists():
        tail = " | ".join(line for line in done.stderr.strip().splitlines()[-3:])[-400:]
        tmp.unlink(missing_ok=True)
        raise PeerEngineError(
            f"symmetrix_extract_mace could not convert {model_path} (exit {done.returncode}): "
            f"{tail}"
        )
    os.replace(tmp, target)
    return target
