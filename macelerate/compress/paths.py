"""Whole Clebsch–Gordan paths of the convolution: list them, score them, remove them.

Each instruction of an interaction's ``conv_tp`` couples a node irrep with an edge spherical
harmonic into one message irrep (e.g. ``0e x 2e -> 2e``); mace-torch gives every instruction its
own slot of the message irreps, which only the block's ``linear`` reads. A path is removed by
zeroing the ``linear`` weights that read its slot: the model stays a plain mace-torch model (same
shapes, loads anywhere), and macelerate's runtime then skips the path, its radial-MLP columns,
and product-basis components no live path feeds (:mod:`macelerate.runtime.dead_blocks`), so the
removal gives measured speed. Training keeps removed paths removed with
``TrainConfig.keep_dead_paths`` (:func:`dead_path_masks`).

Importance is measured, not estimated: a path's score is the RMS change of the forces (eV/Å) on
calibration structures when that path alone is removed (:func:`path_ablation_scores`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from ase import Atoms

from macelerate._mace import model_construction
from macelerate.errors import MacelerateError
from macelerate.graph.batch import build_graph
from macelerate.runtime.dead_blocks import interaction_liveness


class PathPruningError(MacelerateError, ValueError):
    """A path removal that would break the model, or one without the data it needs."""


@dataclass(frozen=True)
class ConvPath:
    """One convolution path.

    Attributes:
        layer: interaction index.
        instruction: index in the block's ``conv_tp.instructions``.
        name: ``"node x edge -> message"`` irreps without multiplicities, e.g.
            ``"0e x 2e -> 2e"`` (unique within a layer; the same across channel pruning).
        live: False when the block's ``linear`` reads its message with all-zero weights.
        width: message components per edge (multiplicity x irrep dimension): what removing
            the path saves in the convolution, per edge.
    """

    layer: int
    instruction: int
    name: str
    live: bool
    width: int

    @property
    def label(self) -> str:
        """``"interactions.<layer>: <name>"``."""
        return f"interactions.{self.layer}: {self.name}"


def _linear_slices(linear: Any, mid: int) -> list[slice]:
    """Slices of ``linear.weight`` (flat) holding the weights that read input irrep ``mid``."""
    slices, start = [], 0
    for ins in linear.instructions:
        size = int(torch.Size(ins.path_shape).numel())
        if ins.i_in == mid:
            slices.append(slice(start, start + size))
        start += size
    return slices


def conv_paths(model: torch.nn.Module) -> list[ConvPath]:
    """Every convolution path of a plain mace-torch MACE, in layer and instruction order.

    Raises:
        PathPruningError: an interaction block of a layout whose paths this module cannot read.
    """
    described: Any = model
    paths = []
    for layer, block in enumerate(described.interactions):
        liveness = interaction_liveness(block)
        if liveness is None:
            raise PathPruningError(
                f"interaction {layer} ({type(block).__name__}) has no readable convolution paths"
            )
        conv = block.conv_tp
        for index, ins in enumerate(conv.instructions):
            name = (
                f"{conv.irreps_in1[ins.i_in1].ir} x {conv.irreps_in2[ins.i_in2].ir} -> "
                f"{conv.irreps_out[ins.i_out].ir}"
            )
            width = conv.irreps_out[ins.i_out].dim
            paths.append(ConvPath(layer, index, name, liveness.live_paths[index], width))
    return paths


def remove_conv_paths(model: torch.nn.Module, paths: Sequence[ConvPath]) -> torch.nn.Module:
    """A copy of ``model`` with ``paths`` removed (their ``linear`` weights zeroed).

    Raises:
        PathPruningError: ``paths`` holds every live path: the energy would no longer depend on the
            positions (no message would pass).
    """
    live = {(p.layer, p.instruction) for p in conv_paths(model) if p.live}
    if live and live <= {(p.layer, p.instruction) for p in paths}:
        raise PathPruningError(
            f"removing all {len(live)} live convolution paths would leave a model whose energy "
            "does not depend on the positions; remove fewer paths"
        )
    with model_construction():
        pruned: Any = copy.deepcopy(model)
    with torch.no_grad():
        for path in paths:
            block = pruned.interactions[path.layer]
            mid = block.conv_tp.instructions[path.instruction].i_out
            flat = block.linear.weight.view(-1)
            for part in _linear_slices(block.linear, mid):
                flat[part] = 0.0
    return pruned


def dead_path_masks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Boolean keep-masks (parameter name -> mask of its shape) that zero the ``linear`` weights
    reading every dead path of ``model`` (a plain MACE or a student); empty when none is dead.

    A training run applies them after every step (``TrainConfig.keep_dead_paths``), so removed
    paths stay removed. Blocks whose paths cannot be read are left alone.
    """
    named = dict(model.named_parameters())
    masks: dict[str, torch.Tensor] = {}
    described: Any = getattr(model, "backbone", model)  # a student's mace-torch backbone
    for block in getattr(described, "interactions", []):
        liveness = interaction_liveness(block)
        if liveness is None or all(liveness.live_paths):
            continue
        name = next(n for n, p in named.items() if p is block.linear.weight)
        mask = torch.ones(block.linear.weight.numel(), dtype=torch.bool)
        for ins, live in zip(block.conv_tp.instructions, liveness.live_paths):
            if not live:
                for part in _linear_slices(block.linear, ins.i_out):
                    mask[part] = False
        masks[name] = mask.view_as(block.linear.weight).to(block.linear.weight.device)
    return masks


def _forces(model: torch.nn.Module, graphs: Sequence[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Forces [n_atoms_total, 3] in eV/Å of ``model`` on prepared graphs."""
    out = []
    for graph in graphs:
        data = dict(graph)
        data["positions"] = graph["positions"].detach().clone()  # mace sets requires_grad
        out.append(model(data, training=False, compute_force=True)["forces"].detach())
    return torch.cat(out)


def path_ablation_scores(
    model: torch.nn.Module, structures: Sequence[Atoms], *, batch_size: int = 4
) -> dict[ConvPath, float]:
    """RMS force change in eV/Å on ``structures`` when each live path alone is removed.

    Args:
        model: a plain mace-torch MACE (only read).
        structures: calibration structures (labels are not needed).
        batch_size: structures per evaluation.

    Returns:
        ``{path: score}`` for every live path (dead ones cost nothing to keep removed).

    Raises:
        PathPruningError: no structures.
    """
    if not structures:
        raise PathPruningError("path importance needs calibration structures")
    described: Any = model
    z_table = [int(z) for z in described.atomic_numbers]
    dtype, cutoff = described.r_max.dtype, float(described.r_max)
    graphs = [
        build_graph(list(structures[start : start + batch_size]), cutoff=cutoff,
                    z_table=z_table, dtype=dtype, min_distance=None)
        for start in range(0, len(structures), batch_size)
    ]  # fmt: skip
    reference = _forces(model, graphs)
    scores = {}
    for path in conv_paths(model):
        if path.live:
            removed = _forces(remove_conv_paths(model, [path]), graphs)
            scores[path] = float((removed - reference).square().mean().sqrt())
    return scores


def least_important_paths(scores: dict[ConvPath, float], count: int) -> list[ConvPath]:
    """The ``count`` paths that change the forces least per message component they cost
    (``score / width``, ascending; ties by layer and instruction).

    Raises:
        PathPruningError: ``count`` is not smaller than the number of scored (live) paths: at least
            one must stay (see :func:`remove_conv_paths`).
    """
    if count >= len(scores):
        raise PathPruningError(
            f"cannot remove {count} of the model's {len(scores)} live convolution paths: at "
            "least one must stay"
        )
    ranked = sorted(scores, key=lambda p: (scores[p] / p.width, p.layer, p.instruction))
    return ranked[:count]
