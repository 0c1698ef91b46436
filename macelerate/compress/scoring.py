"""What an importance method gets and returns, and how per-weight values add up per block.

A method (:data:`macelerate.compress.importance.IMPORTANCE_METHODS`) is a function
``(model, layout, structures, options) -> BlockScores``. Methods that score weights compute one
value per weight element and sum them into channel blocks and L orders with
:func:`reduce_slices` over :func:`weight_slices`, which read the layout records.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms

from macelerate.compress.irreps_slicing import flat_weight_channels, flat_weight_degrees
from macelerate.mace.layout import ContractionWeight, E3nnWeight, MaceLayout, read_layout

ChannelScores = dict[str, np.ndarray]
"""Per channel space, [channels] scores."""
DegreeScores = dict[str, dict[int, float]]
"""Per channel space, a score per L."""


@dataclass(frozen=True)
class ImportanceOptions:
    """Settings of :func:`~macelerate.compress.importance.block_importance` (see there)."""

    labels: Any = None
    seed: int = 0
    energy_weight: float = 1.0
    forces_weight: float = 10.0
    batch_size: int = 4
    probes: int = 4
    progress: bool = False


@dataclass(frozen=True)
class BlockScores:
    """What an importance method returns.

    Attributes:
        channel, degree: channel and L scores per space (higher: more important).
        labels: ``"labels"``, ``"model"`` (own predictions) or ``"none"`` (no data read).
        num_structures: calibration structures read.
    """

    channel: ChannelScores
    degree: DegreeScores
    labels: str = "none"
    num_structures: int = 0


ScoreFunction = Callable[
    [torch.nn.Module, MaceLayout, Sequence[Atoms], ImportanceOptions], BlockScores
]


@dataclass(frozen=True)
class WeightSlice:
    """How one parameter reads or writes one channel space.

    Attributes:
        parameter: state-dict name of the parameter.
        space: channel-space name.
        channels: [numel] channel of ``space`` each element (row-major) touches, -1 for none;
            ``None``: the parameter only counts towards the space's L scores.
        degrees: [numel] L of ``space`` each element touches, or ``None`` (not L-specific).
    """

    parameter: str
    space: str
    channels: torch.Tensor | None
    degrees: torch.Tensor | None


def _rows(values: torch.Tensor, rows: int) -> torch.Tensor:
    """[numel] -> [rows * numel]: the same index for every row of a ``[rows, numel]`` weight."""
    return values.expand(rows, -1).reshape(-1)


def _e3nn_slices(record: E3nnWeight) -> list[WeightSlice]:
    slices = []
    for k, op in enumerate(record.operands):
        space, degree_space = op.space, op.degree_space
        if space is not None and any(k in p.axes for p in record.paths):
            sizes = [op.block_size(e) for e in range(len(op.irreps))]
            channels = _rows(flat_weight_channels(record.paths, k, sizes), record.rows)
            degrees = None
            if degree_space == space:
                degrees = _rows(flat_weight_degrees(record.paths, k, op.irreps), record.rows)
                degree_space = None  # counted with the channels
            slices.append(WeightSlice(record.parameter, space, channels, degrees))
        if degree_space is not None:  # L scores of another space (edge attributes -> message)
            degrees = _rows(flat_weight_degrees(record.paths, k, op.irreps), record.rows)
            slices.append(WeightSlice(record.parameter, degree_space, None, degrees))
    return slices


def weight_slices(layout: MaceLayout | torch.nn.Module) -> list[WeightSlice]:
    """Every (parameter, space) pair of a plain MACE whose elements belong to channel blocks.

    Args:
        layout: from :func:`~macelerate.mace.layout.read_layout`, or the plain model itself.
    """
    if not isinstance(layout, MaceLayout):
        layout = read_layout(layout)
    slices = []
    for record in layout.weights:
        if isinstance(record, E3nnWeight):
            slices += _e3nn_slices(record)
        elif isinstance(record, ContractionWeight) and record.operand.space is not None:
            channels = torch.arange(record.shape[-1]).expand(record.shape).reshape(-1)
            slices.append(WeightSlice(record.parameter, record.operand.space, channels, None))
    return slices


def zero_scores(spaces: dict[str, Any]) -> tuple[ChannelScores, DegreeScores]:
    """All-zero channel scores and empty L scores for every space."""
    return {s: np.zeros(irreps[0][0]) for s, irreps in spaces.items()}, {s: {} for s in spaces}


def reduce_slices(
    slices: Sequence[WeightSlice],
    values: dict[str, torch.Tensor],
    spaces: dict[str, Any],
    reducer: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[ChannelScores, DegreeScores]:
    """Sum ``reducer(per-slice block sums)`` over slices, for channels and for L orders.

    Args:
        values: per parameter name, a value per element (parameters absent here, such as mace's
            frozen all-zero contraction weights, are skipped).
        spaces: channel-space irreps by name.
        reducer: applied to each slice's [blocks] sums before they are added up.
    """
    channel, degree = zero_scores(spaces)
    for sl in slices:
        if sl.parameter not in values:
            continue
        flat = values[sl.parameter].reshape(-1).to(torch.float64)
        for index, target in ((sl.channels, "c"), (sl.degrees, "l")):
            if index is None:
                continue
            mask = index >= 0
            size = int(index.max()) + 1 if index.numel() else 0
            sums = torch.zeros(size, dtype=torch.float64).index_add_(0, index[mask], flat[mask])
            block = reducer(sums).numpy()
            if target == "c":
                channel[sl.space][: len(block)] += block
                continue
            scores = degree[sl.space]
            for ell in torch.unique(index[mask]).tolist():
                scores[ell] = scores.get(ell, 0.0) + float(block[ell])
    return channel, degree
