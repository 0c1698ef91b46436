"""Structural pruning of mace-torch MACE models by whole (channel, L) irrep blocks.

``prune(model, channels=..., max_L=..., max_ell=...)`` returns a new, smaller plain mace-torch
``ScaleShiftMACE`` (exactly equivariant) and a :class:`PruneReport`; see
:mod:`macelerate.compress.prune` for what is exact and :mod:`macelerate.compress.importance` for
the channel spaces and block scores.
"""

from macelerate.compress.importance import (
    ImportanceScores,
    block_importance,
    channel_spaces,
    plain_mace_model,
)
from macelerate.compress.prune import (
    PrunePlan,
    PruneReport,
    apply_plan,
    estimate_macs,
    plan_pruning,
    prune,
    uniform_plan,
)

__all__ = [
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
    "uniform_plan",
]
