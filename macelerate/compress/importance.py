"""Importance of whole (channel, L) irrep blocks of a mace-torch MACE.

The channel spaces a block belongs to are described in :mod:`macelerate.mace.layout`. Each space
keeps its OWN set of channels when pruned (same count in every space, which mace-torch requires):
that is exact, because the spaces only meet through full linear mixers, and prunes better than
one shared set.

Importance methods are plain functions in :data:`IMPORTANCE_METHODS` (name -> function, see
:mod:`macelerate.compress.scoring` for their signature); :func:`block_importance` looks one up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from ase import Atoms

from macelerate.compress.scoring import (
    BlockScores,
    ImportanceOptions,
    ScoreFunction,
    reduce_slices,
    weight_slices,
)
from macelerate.compress.source import plain_mace_model
from macelerate.compress.taylor import taylor_scores
from macelerate.data.labels import LabelKeys
from macelerate.mace.irreps import Irrep, irreps_string
from macelerate.mace.layout import MaceLayout, read_layout

Method = Literal["taylor", "magnitude", "random"]


def channel_spaces(model: torch.nn.Module) -> dict[str, tuple[Irrep, ...]]:
    """Irreps of every channel space of a plain MACE, by name (``node.t``, ``edge.t``,
    ``selector.t`` for non-residual blocks, ``message.t``; see :mod:`macelerate.mace.layout`)."""
    return read_layout(model).spaces


def magnitude_scores(
    model: torch.nn.Module, layout: MaceLayout, structures: Sequence[Atoms], options
) -> BlockScores:
    """L2 norm of every weight reading or writing the block (reads no data)."""
    values = {n: p.detach().pow(2) for n, p in model.named_parameters()}
    channel, degree = reduce_slices(weight_slices(layout), values, layout.spaces, lambda s: s)
    return BlockScores(
        {s: np.sqrt(v) for s, v in channel.items()},
        {s: {ell: float(np.sqrt(v)) for ell, v in d.items()} for s, d in degree.items()},
    )


def random_scores(
    model: torch.nn.Module, layout: MaceLayout, structures: Sequence[Atoms], options
) -> BlockScores:
    """Seeded uniform scores (a control)."""
    rng = np.random.default_rng(options.seed)
    spaces = layout.spaces
    return BlockScores(
        {s: rng.random(irreps[0][0]) for s, irreps in spaces.items()},
        {s: {ell: float(rng.random()) for _, ell, _ in irreps} for s, irreps in spaces.items()},
    )


IMPORTANCE_METHODS: dict[str, ScoreFunction] = {
    "taylor": taylor_scores,
    "magnitude": magnitude_scores,
    "random": random_scores,
}
"""Importance methods by name; each returns :class:`~macelerate.compress.scoring.BlockScores`."""


@dataclass(frozen=True)
class ImportanceScores:
    """Scores of channel blocks (higher: more important) and of L orders, per channel space.

    Attributes:
        method: a key of :data:`IMPORTANCE_METHODS`.
        labels: ``"labels"`` (reference labels), ``"model"`` (the model's own predictions) or
            ``"none"`` (methods that read no data).
        spaces: irreps string of every channel space (``node.t``, ``edge.t``, ``selector.t``,
            ``message.t``).
        channel_scores: per space, [channels] scores (a channel block spans all its L).
        degree_scores: per space, score per L (``message.t``: per ell, including the radial
            weights of edge-tensor-product paths on edge attributes of that ell).
        num_channels, max_L, max_ell: the scored model's channels, hidden max L and max ell.
        num_structures: calibration structures used.
    """

    method: str
    labels: str
    spaces: dict[str, str]
    channel_scores: dict[str, tuple[float, ...]]
    degree_scores: dict[str, dict[int, float]]
    num_channels: int
    max_L: int
    max_ell: int
    num_structures: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe copy (L keys become strings)."""
        out = asdict(self)
        out["degree_scores"] = {
            s: {str(k): v for k, v in d.items()} for s, d in self.degree_scores.items()
        }
        out["channel_scores"] = {s: list(v) for s, v in self.channel_scores.items()}
        return out


def block_importance(
    model: Any,
    structures: Sequence[Atoms] = (),
    *,
    method: Method,
    labels: LabelKeys | Literal["model"] | None = None,
    seed: int = 0,
    energy_weight: float = 1.0,
    forces_weight: float = 10.0,
    batch_size: int = 4,
    probes: int = 4,
    progress: bool = False,
) -> ImportanceScores:
    """Score every channel block (and L order) of every channel space of a MACE.

    Args:
        model: a ``ScaleShiftMACE`` or ``Potential`` (only read).
        structures: calibration structures (``taylor`` only).
        method: ``magnitude``: L2 norm of every weight reading or writing the block;
            ``taylor``: :mod:`macelerate.compress.taylor`; ``random``: seeded uniform scores.
        labels: ``LabelKeys`` naming reference energy/forces in ``structures``; ``"model"`` or
            ``None``: the model's own predictions (``taylor``: second-order probe estimate).
        seed: seeds ``random`` scores and the probes.
        energy_weight, forces_weight: loss weights of the energy-per-atom (eV/atom) and force
            component (eV/Å) squared errors, averaged over structures and components.
        batch_size: structures per forward/backward pass.
        probes: random projections per batch (``labels="model"``).
        progress: show a progress bar over the calibration structures.

    Returns:
        :class:`ImportanceScores`.

    Raises:
        ValueError: an unknown method, or ``taylor`` without structures.
    """
    if method not in IMPORTANCE_METHODS:
        raise ValueError(f"unknown importance method {method!r}: {', '.join(IMPORTANCE_METHODS)}")
    plain = plain_mace_model(model)
    layout = read_layout(plain)
    options = ImportanceOptions(
        labels=labels, seed=seed, energy_weight=energy_weight, forces_weight=forces_weight,
        batch_size=batch_size, probes=probes, progress=progress,
    )  # fmt: skip
    scores = IMPORTANCE_METHODS[method](plain, layout, list(structures), options)
    return ImportanceScores(
        method=method,
        labels=scores.labels,
        spaces={s: irreps_string(irreps) for s, irreps in layout.spaces.items()},
        channel_scores={s: tuple(float(x) for x in v) for s, v in scores.channel.items()},
        degree_scores={s: dict(sorted(d.items())) for s, d in scores.degree.items()},
        num_channels=layout.num_channels,
        max_L=layout.max_L,
        max_ell=layout.max_ell,
        num_structures=scores.num_structures,
    )
