"""``TransformRecord``: one transform a model went through, as checkpoints store it.

A plain dataclass with no dependencies, so every layer that transforms models (``compress``,
``train``, ``transforms``) can return one and ``models`` can store it.

Checkpoints keep the list in ``transforms_applied`` (see :mod:`macelerate.models.checkpoint`);
a :class:`~macelerate.models.potential.Potential` keeps the runtime transforms applied to it in
``transforms``. Persistent transforms (pruning, training, distillation) change the weights on disk;
runtime transforms (fusion, precision, tabulated radial functions) are applied again at every load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TransformRecord:
    """One transform and what it reported.

    Attributes:
        name: ``"prune"``, ``"recovery"``, ``"train"``, ``"distill"``, ``"fuse"``, ``"precision"``,
            ``"tabulate_radial"``, ...
        persistent: True if the transform changed the stored weights or architecture.
        options: what it was asked to do (JSON-safe).
        summary: what it did and measured (JSON-safe).
    """

    name: str
    persistent: bool
    options: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint form: ``{"name", "persistent", "options", "summary"}``."""
        return {
            "name": self.name,
            "persistent": self.persistent,
            "options": dict(self.options),
            "summary": dict(self.summary),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransformRecord:
        """Inverse of :meth:`to_dict`; also reads the flat records of older checkpoints
        (``{"transform": "prune", ...fields}``), whose fields become the summary."""
        if "name" in data:
            return cls(
                name=str(data["name"]),
                persistent=bool(data.get("persistent", True)),
                options=dict(data.get("options", {})),
                summary=dict(data.get("summary", {})),
            )
        if "transform" in data:
            rest = {k: v for k, v in data.items() if k != "transform"}
            return cls(name=str(data["transform"]), persistent=True, summary=rest)
        raise ValueError(f"not a transform record (no 'name'): {sorted(data)[:5]}")
