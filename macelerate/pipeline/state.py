"""The resumable record of one ``compress`` run: ``DIR/compress.json``.

It holds the settings and the identity of the inputs (so a re-run in the same folder continues
only the same run), the wall time spent so far (the budget spans kills), and each finished
stage's result. It is rewritten atomically after every stage and every trained candidate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from macelerate.atomic_io import write_atomically
from macelerate.errors import MacelerateError

STATE_NAME = "compress.json"


class CompressStateError(MacelerateError, ValueError):
    """The output folder holds another run's state, or a damaged one."""


def structures_sha256(structures: Sequence[Atoms]) -> str:
    """A digest of the numbers, positions, cell and pbc of ``structures`` (their identity)."""
    digest = hashlib.sha256()
    for atoms in structures:
        for array in (atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class CompressState:
    """``DIR/compress.json``: identity, spent seconds, stage results."""

    def __init__(self, folder: Path, identity: dict[str, Any]) -> None:
        self.path = folder / STATE_NAME
        self.identity = identity
        self.data: dict[str, Any] = {"identity": identity, "spent_seconds": 0.0, "stages": {}}
        self._since = time.perf_counter()
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        try:
            stored = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CompressStateError(
                f"{self.path} is damaged ({error}); delete it (or the folder) to start over"
            ) from error
        if stored.get("identity") != self.identity:
            before, now = stored.get("identity", {}), self.identity
            changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
            raise CompressStateError(
                f"{self.path.parent} holds a compress run with other inputs or settings "
                f"(changed: {', '.join(changed)}); re-run with the same ones to continue it, or "
                "choose another --out to start a new run"
            )
        self.data = stored

    @property
    def resumed(self) -> bool:
        return bool(self.data["stages"])

    def spent_seconds(self) -> float:
        """Wall time of this run so far, over all its resumptions."""
        return float(self.data["spent_seconds"]) + time.perf_counter() - self._since

    def stage(self, name: str) -> Any:
        """The stored result of stage ``name``, or ``None`` if it has not finished."""
        return self.data["stages"].get(name)

    def finish(self, name: str, result: Any) -> None:
        """Record ``result`` for stage ``name`` and write the state."""
        self.data["stages"][name] = result
        self.save()

    def save(self) -> None:
        now = time.perf_counter()
        self.data["spent_seconds"] = float(self.data["spent_seconds"]) + now - self._since
        self._since = now
        text = json.dumps(self.data, indent=1, default=_json_default)
        write_atomically(self.path, lambda tmp: Path(tmp).write_text(text))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
