"""Pruning plans: which channel blocks of every space and which L orders a pruned MACE keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from macelerate.compress.importance import ImportanceScores
from macelerate.compress.source import plain_mace_model
from macelerate.mace.layout import read_layout


@dataclass(frozen=True)
class PrunePlan:
    """Which channel blocks and L orders a pruned MACE keeps.

    Attributes:
        channels: channels kept in every space (mace-torch needs one channel count).
        kept: per channel space (``node.t``, ``edge.t``, ``selector.t`` of non-residual
            blocks, ``message.t``, see :mod:`~macelerate.mace.layout`), the sorted kept
            channel indices. Every space keeps its own set.
        max_L: largest L of the pruned hidden features.
        max_ell: largest spherical-harmonic order of the pruned edge attributes.
        removed: human-readable removed blocks.
    """

    channels: int
    kept: tuple[tuple[str, tuple[int, ...]], ...]
    max_L: int
    max_ell: int
    removed: tuple[str, ...] = ()

    def kept_channels(self, space: str) -> tuple[int, ...]:
        """Sorted kept channels of ``space``."""
        return dict(self.kept)[space]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy."""
        out = asdict(self)
        out["kept"] = {space: list(kept) for space, kept in self.kept}
        out["removed"] = list(self.removed)
        return out


def _removed(spaces: dict, kept: dict, old_max: tuple[int, int], new_max: tuple[int, int]):
    removed = []
    for space, irreps in spaces.items():
        gone = sorted(set(range(irreps[0][0])) - set(kept[space]))
        removed += [f"{space} channel {c} (all L)" for c in gone]
    removed += [f"hidden L={ell}" for ell in range(new_max[0] + 1, old_max[0] + 1)]
    removed += [f"edge ell={ell}" for ell in range(new_max[1] + 1, old_max[1] + 1)]
    return tuple(removed)


def _limits(max_L: int | None, max_ell: int | None, old: tuple[int, int]) -> tuple[int, int]:
    new = (old[0] if max_L is None else max_L, old[1] if max_ell is None else max_ell)
    if not (0 <= new[0] <= old[0] and 0 <= new[1] <= old[1]):
        raise ValueError(f"max_L, max_ell = {new} must lie within the model's {old}")
    return new


def plan_pruning(
    scores: ImportanceScores, *, channels: int, max_L: int | None = None, max_ell: int | None = None
) -> PrunePlan:
    """Keep the ``channels`` highest-scoring channels of every space (ties: lower index).

    Args:
        scores: from :func:`~macelerate.compress.importance.block_importance`.
        channels: channels to keep, 1..the model's channels.
        max_L, max_ell: new hidden max L and edge max ell (``None``: unchanged).
    """
    if not 1 <= channels <= scores.num_channels:
        raise ValueError(f"channels must be in 1..{scores.num_channels}, got {channels}")
    limits = _limits(max_L, max_ell, (scores.max_L, scores.max_ell))
    kept = {}
    for space, values in scores.channel_scores.items():
        order = sorted(range(len(values)), key=lambda c: (-values[c], c))
        kept[space] = tuple(sorted(order[:channels]))
    spaces = {s: ((len(v), 0, 1),) for s, v in scores.channel_scores.items()}
    removed = _removed(spaces, kept, (scores.max_L, scores.max_ell), limits)
    return PrunePlan(channels, tuple(kept.items()), limits[0], limits[1], removed)


def uniform_plan(
    model: Any, kept: Sequence[int], *, max_L: int | None = None, max_ell: int | None = None
) -> PrunePlan:
    """A plan keeping the same channel indices ``kept`` in every space of ``model``."""
    layout = read_layout(plain_mace_model(model))
    spaces, old = layout.spaces, (layout.max_L, layout.max_ell)
    limits = _limits(max_L, max_ell, old)
    kept_sets = {space: tuple(sorted(kept)) for space in spaces}
    removed = _removed(spaces, kept_sets, old, limits)
    return PrunePlan(len(kept), tuple(kept_sets.items()), limits[0], limits[1], removed)
