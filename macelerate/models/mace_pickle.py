"""The one function that unpickles mace-torch ``.model`` files, and the screen it runs first.

mace-torch saves whole ``nn.Module`` objects with ``torch.save``. Reading one executes code named in
the pickle, so it is done only here, only for a file the user named, and only after the pickle's
global references have been read *without executing anything* and found to point into mace-torch,
e3nn, torch, numpy or collections. That screen stops foreign pickles (``os.system`` payloads, other
packages' objects) but is not a sandbox: load ``.model`` files you trust, or convert them once with
``macelerate convert`` into a weights-only checkpoint.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from macelerate._mace import import_mace, quiet_model_construction
from macelerate.errors import ModelFileError

ALLOWED_GLOBAL_PREFIXES = ("mace.", "e3nn.", "torch.", "numpy.", "collections.", "opt_einsum_fx.")


def is_torchscript_archive(path: Path) -> bool:
    """True if ``path`` is a TorchScript zip (it has a ``code/`` folder)."""
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def screen_pickle_globals(path: Path) -> list[str]:
    """Globals a ``torch.save`` pickle references, read without unpickling.

    Raises:
        ModelFileError: the pickle names anything outside :data:`ALLOWED_GLOBAL_PREFIXES`.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as error:  # torch raises several types for malformed archives
        raise ModelFileError(f"{path} is not a readable torch checkpoint ({error})") from error
    foreign = [name for name in names if not name.startswith(ALLOWED_GLOBAL_PREFIXES)]
    if foreign:
        raise ModelFileError(
            f"{path} is a pickle that references {foreign[:5]}, which are not mace-torch, e3nn "
            "or torch objects; macelerate refuses to unpickle it. If you trust this file, load it "
            "with torch.load yourself and pass the module to macelerate.load."
        )
    return names


def load_mace_pickle(path: str | Path) -> torch.nn.Module:
    """Unpickle a mace-torch ``.model`` file (a whole pickled module) onto the CPU.

    This runs code from the file (``torch.load(weights_only=False)``) after
    :func:`screen_pickle_globals` has checked what the pickle references. TorchScript archives are
    read with ``torch.jit.load``, which runs no Python from the file.

    Raises:
        ModelFileError: the file is foreign, corrupted, or holds something other than a module.
    """
    path = Path(path)
    import_mace()  # mace must be importable (and imported before e3nn) to rebuild its classes
    if is_torchscript_archive(path):
        try:
            with quiet_model_construction():
                return torch.jit.load(str(path), map_location="cpu")
        except Exception as error:
            raise ModelFileError(f"{path} is a broken TorchScript archive ({error})") from error
    screen_pickle_globals(path)
    try:
        with quiet_model_construction():
            module = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as error:
        raise ModelFileError(
            f"{path} could not be unpickled as a mace-torch model ({error})"
        ) from error
    if not isinstance(module, torch.nn.Module):
        raise ModelFileError(
            f"{path} holds a {type(module).__name__}, not a model: mace-torch training checkpoints "
            "(*.pt with optimizer state) must be exported as .model files first"
        )
    return module
