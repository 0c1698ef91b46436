"""Lazy re-exports for package ``__init__`` files: each public name is imported on first use.

A package lists its public names and the modules defining them; :func:`lazy_exports` returns the
module-level ``__getattr__`` and ``__dir__`` that import a name's module when the name is first
read. Importing the package itself then imports nothing heavy (mace-torch, e3nn, matplotlib).
A lazily exported name must not be the name of one of the package's own submodules (a submodule,
once imported, is an attribute of its package and would shadow the name).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package`` (its ``__name__``).

    Args:
        package: the package's ``__name__``.
        exports: public name -> the module that defines it (absolute name).

    Usage, in ``package/__init__.py``::

        __getattr__, __dir__ = lazy_exports(__name__, {"train": "macelerate.train.loop"})
    """

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        dunders = (name for name in vars(sys.modules[package]) if name.startswith("__"))
        return sorted({*exports, *dunders})

    return __getattr__, __dir__
