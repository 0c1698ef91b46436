"""The one place macelerate imports mace-torch and e3nn.

Two facts make this module necessary:

* ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in ``os.environ`` (mace-torch
  0.3.16 does this at import). e3nn 0.4.4 loads its own constants with ``torch.load`` and no
  ``weights_only`` argument, which fails under torch >= 2.6 unless that variable is set, so
  ``mace`` must be imported before ``e3nn``. macelerate passes ``weights_only`` explicitly to every
  ``torch.load`` it makes, so the variable never weakens macelerate's own loading.
* mace-torch is heavy to import (about 3 s); importing it lazily keeps ``import macelerate`` fast.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from types import ModuleType


def import_mace() -> ModuleType:
    """Import mace-torch (before e3nn) and return the ``mace`` package.

    Raises:
        ImportError: mace-torch is not installed, with the command that installs it.
    """
    try:
        # mace-torch prints that cuequivariance is absent; that is the CPU default here.
        with quiet_model_construction(), contextlib.redirect_stdout(io.StringIO()):
            import mace
            import mace.modules  # noqa: F401
    except ImportError as error:  # pragma: no cover - exercised only without mace installed
        raise ImportError(
            "macelerate needs mace-torch==0.3.16: pip install 'mace-torch==0.3.16'"
        ) from error
    return mace


def mace_modules() -> ModuleType:
    """Return ``mace.modules`` (the model classes), imported in the safe order."""
    import_mace()
    import mace.modules

    return mace.modules


THIRD_PARTY_WARNINGS = (
    (DeprecationWarning, r"`torch\.jit\.(script|load|save|trace)` is deprecated"),
    (UserWarning, r"The TorchScript type system doesn't support instance-level annotations"),
    (UserWarning, r"Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected"),
    # nn.Module.to() reads .grad of e3nn's non-leaf constant tensors.
    (UserWarning, r"The \.grad attribute of a Tensor that is not a leaf Tensor is being accessed"),
)
"""Warnings e3nn 0.4.4 and mace-torch emit by the hundred while building models under torch 2.13."""


@contextlib.contextmanager
def quiet_model_construction() -> Iterator[None]:
    """Silence only :data:`THIRD_PARTY_WARNINGS` (by category and message) inside the block."""
    with warnings.catch_warnings():
        for category, message in THIRD_PARTY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield
