"""The embedded demo: a small MACE trained by this project and a graphene-oxide structure.

``run_demo`` (imported on first use) times the demo model with mace-torch and macelerate; the
structure itself is :func:`macelerate.data.structures.graphene_oxide`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.demo.run import run_demo

_EXPORTS = {"run_demo": "macelerate.demo.run"}

__all__ = ["run_demo"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
