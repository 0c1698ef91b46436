"""The ``macelerate`` command: one parser, one module per subcommand (parse, call, print).

``main(argv)`` (imported on first use) runs it; ``python -m macelerate.cli`` and the
``macelerate`` script both call it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.cli.__main__ import main

_EXPORTS = {"main": "macelerate.cli.__main__"}

__all__ = ["main"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
