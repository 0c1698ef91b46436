"""Structural pruning of mace-torch MACE models by whole (channel, L) irrep blocks.

``prune(model, channels=..., max_L=..., max_ell=...)`` returns a new, smaller plain mace-torch
``ScaleShiftMACE`` (exactly equivariant) and a :class:`PruneReport`; see
:mod:`macelerate.compress.prune` for what is exact, :mod:`macelerate.mace.layout` for the channel
spaces and :mod:`macelerate.compress.importance` for the block scores.

Names are imported eagerly: ``prune`` is both a function and a submodule, which a lazy
re-export could not tell apart.
"""

from __future__ import annotations

from macelerate.compress.importance import (
    IMPORTANCE_METHODS,
    ImportanceScores,
    block_importance,
    channel_spaces,
)
from macelerate.compress.macs import estimate_macs
from macelerate.compress.plan import PrunePlan, plan_pruning, uniform_plan
from macelerate.compress.prune import PruneReport, apply_plan, prune, recovery_record
from macelerate.compress.source import plain_mace_model

__all__ = [
    "IMPORTANCE_METHODS",
    "ImportanceScores",
    "PrunePlan",
    "PruneReport",
    "apply_plan",
    "block_importance",
    "channel_spaces",
    "estimate_macs",
    "plain_mace_model",
    "plan_pruning",
    "prune",
    "recovery_record",
    "uniform_plan",
]
