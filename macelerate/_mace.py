"""The one place macelerate imports mace-torch and e3nn, and the lock that builds their modules.

Three facts make this module necessary:

* ``import mace`` sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in ``os.environ`` (mace-torch
  0.3.16 does this at import). e3nn 0.4.4 loads its constants (``e3nn/o3/_wigner.py``) with
  ``torch.load`` and no ``weights_only`` argument, once, when ``e3nn.o3`` is imported; that fails
  under torch >= 2.6 unless the variable is set. So :func:`import_mace` imports ``mace`` (which
  imports ``e3nn.o3``) and then puts ``os.environ`` back exactly as it was: the variable never
  outlives the import, and the user's own ``torch.load`` calls keep torch's safe default.
* Building e3nn / mace-torch modules touches process-wide state: mace-torch and e3nn trace code
  with ``torch.fx``, which patches ``torch.nn.Module.__call__`` for *every* thread while it runs
  (another thread's forward then fails with ``NameError: module is not installed as a
  submodule``), and macelerate builds in a given precision inside
  :func:`macelerate._torch_state.default_dtype`. :func:`model_construction` therefore holds one
  process-wide lock exclusively while modules are built, copied or unpickled, and
  :func:`model_inference` holds the same lock shared while a model runs: many threads may
  predict at once, and none predicts while another builds.
* mace-torch is heavy to import (about 3 s); importing it lazily keeps ``import macelerate`` fast.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType


class _BuildLock:
    """A re-entrant readers-writer lock that lets builders and predictors take turns.

    ``shared()`` may be held by many threads at once; ``exclusive()`` by one thread, with no
    other holder. Both nest within a thread. When a builder finishes, the predictors already
    waiting go first; a builder waiting keeps new predictors out, so neither side starves. A
    thread holding ``shared()`` that asks for ``exclusive()`` gives its shared hold up while it
    waits and gets it back when it is done (it runs no model meanwhile), so two such threads
    cannot deadlock.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._writer: int | None = None
        self._writer_depth = 0
        self._readers: dict[int, int] = {}  # thread id -> nesting depth
        self._writers_waiting = 0
        self._readers_waiting = 0
        self._readers_turn = False

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            given_up = 0
            if self._writer == me:
                self._writer_depth += 1
            else:
                given_up = self._readers.pop(me, 0)
                if given_up:
                    self._condition.notify_all()
                self._writers_waiting += 1
                while self._writer is not None or self._readers or self._readers_turn:
                    self._condition.wait()
                self._writers_waiting -= 1
                self._writer, self._writer_depth = me, 1
        try:
            yield
        finally:
            with self._condition:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    self._writer = None
                    if given_up:  # nobody else holds anything: take the shared hold back
                        self._readers[me] = given_up
                    self._readers_turn = self._readers_waiting > 0
                    self._condition.notify_all()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            if not (self._writer == me or me in self._readers):  # not nested: may wait
                self._readers_waiting += 1
                while self._writer is not None or (
                    self._writers_waiting and not self._readers_turn
                ):
                    self._condition.wait()
                self._readers_waiting -= 1
                if self._readers_waiting == 0:
                    self._readers_turn = False
            self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._condition:
                self._readers[me] -= 1
                if self._readers[me] == 0:
                    del self._readers[me]
                    self._condition.notify_all()


_BUILD_LOCK = _BuildLock()


def import_mace() -> ModuleType:
    """Import mace-torch (before e3nn) and return the ``mace`` package; ``os.environ`` unchanged.

    The installed versions are checked first, once per process
    (:func:`macelerate.mace.contract.check_mace_version`).

    Raises:
        MaceVersionError: an ImportError: mace-torch or e3nn is not installed, or not at a version
            macelerate supports; the message names both versions and the install command.
    """
    _check_versions()
    if "mace.modules" in sys.modules:
        return sys.modules["mace"]
    # mace-torch prints that cuequivariance is absent; that is the CPU default here.
    with model_construction(), contextlib.redirect_stdout(io.StringIO()):
        before = dict(os.environ)
        try:
            import mace
            import mace.modules  # noqa: F401  (imports e3nn.o3, which loads its constants)
        except ImportError as error:  # pragma: no cover - exercised only without mace installed
            raise ImportError(
                "macelerate needs mace-torch==0.3.16: pip install 'mace-torch==0.3.16'"
            ) from error
        finally:
            _restore_environment(before)
    return mace


@functools.cache
def _check_versions() -> None:
    """:func:`~macelerate.mace.contract.check_mace_version`, once (package metadata is read from
    disk, and models are built many times)."""
    from macelerate.mace.contract import check_mace_version

    check_mace_version()


def _restore_environment(before: dict[str, str]) -> None:
    """Undo whatever an import added to or changed in ``os.environ``."""
    for key in set(os.environ) - set(before):
        del os.environ[key]
    for key, value in before.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


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
def model_construction() -> Iterator[None]:
    """Hold the build lock exclusively and silence :data:`THIRD_PARTY_WARNINGS` inside the block.

    Wrap every piece of code that builds, deep-copies, unpickles or converts e3nn / mace-torch
    modules (or changes the default dtype to do so). Re-entrant within a thread.
    """
    with _BUILD_LOCK.exclusive(), warnings.catch_warnings():
        for category, message in THIRD_PARTY_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


quiet_model_construction = model_construction
"""The former name of :func:`model_construction` (it now also takes the build lock)."""


@contextlib.contextmanager
def model_inference() -> Iterator[None]:
    """Hold the build lock shared: no model is built (and no fx patch is live) inside the block.

    Wrap each forward pass of a model that other threads may be building models beside. Many
    threads may hold it at once; it costs a few microseconds per call.
    """
    with _BUILD_LOCK.shared():
        yield
