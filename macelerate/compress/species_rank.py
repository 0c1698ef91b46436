"""Low-rank species embeddings: every element-dependent weight of a MACE from r shared directions.

A MACE sees the element only through the one-hot node attributes, which enter three places
linearly: the node embedding (``node_embedding.linear``, [n_elements, channels]), each
interaction's element-dependent skip connection (``skip_tp``, whose second input is the one-hot)
and each product basis's contraction weights (``weights_max`` and ``weights.j``, element axis
first). Stacking all of them gives one matrix W [n_elements, K]. Rank r means
``W = A @ B`` with A [n_elements, r]: the model behaves as if every element were an r-dimensional
learned embedding ``A[z]`` feeding every element-dependent weight. For a universal model with 89
elements this shares what chemistry the elements share (an element with little data borrows from
the others) and stores n·r + r·K numbers instead of n·K.

The model stays a plain mace-torch model (same shapes, loads anywhere): :func:`low_rank_species`
projects its weights onto the best rank-r matrix (truncated SVD, a new model and a report), and
training keeps the rank with ``TrainConfig.species_rank`` (:class:`SpeciesProjector` projects
after every optimiser step). Inference costs the same: the runtime gathers per-element weights
either way.
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


class SpeciesRankError(MacelerateError, ValueError):
    """A rank the model cannot take, or a model without element-dependent weights."""


@dataclass(frozen=True)
class SpeciesBlock:
    """One parameter's element-dependent entries.

    Attributes:
        name: the parameter's name in ``model.named_parameters()``.
        index: [n_elements, k] positions in the flattened parameter; row e holds element e's
            entries.
    """

    name: str
    index: torch.Tensor


def _e3nn_instruction_offsets(module: Any) -> list[tuple[Any, int]]:
    """``(instruction, offset in the flat weight)`` of every weighted e3nn instruction."""
    offsets, start = [], 0
    for ins in module.instructions:
        if getattr(ins, "has_weight", True):
            offsets.append((ins, start))
            start += int(torch.Size(ins.path_shape).numel())
    return offsets


def _element_axis_index(shape: Sequence[int], axis: int, offset: int) -> torch.Tensor:
    """[n_elements, k] flat positions of a block of ``shape`` at ``offset``, element ``axis``."""
    size = int(torch.Size(shape).numel())
    positions = torch.arange(offset, offset + size).view(*shape)
    return positions.movedim(axis, 0).reshape(shape[axis], -1)


def _one_hot_irreps(irreps: Any, n_elements: int) -> bool:
    return str(irreps) == f"{n_elements}x0e"


def species_blocks(model: torch.nn.Module) -> list[SpeciesBlock]:
    """The element-dependent entries of every parameter of a MACE or a student.

    Covered: the node embedding, ``skip_tp`` blocks whose second input is the one-hot, and the
    symmetric contraction weights. Parameters of other layer kinds are left alone.

    Raises:
        SpeciesRankError: the model has none of them (not a MACE).
    """
    described: Any = getattr(model, "backbone", model)
    n_elements = int(len(described.atomic_numbers))
    owner = {id(p): name for name, p in model.named_parameters()}
    blocks: list[SpeciesBlock] = []

    def add(parameter: torch.Tensor, parts: list[torch.Tensor]) -> None:
        if id(parameter) in owner and parts:
            blocks.append(SpeciesBlock(owner[id(parameter)], torch.cat(parts, dim=1)))

    embedding = getattr(getattr(described, "node_embedding", None), "linear", None)
    if embedding is not None and _one_hot_irreps(embedding.irreps_in, n_elements):
        parts = [
            _element_axis_index(ins.path_shape, 0, start)
            for ins, start in _e3nn_instruction_offsets(embedding)
        ]
        add(embedding.weight, parts)
    for interaction in getattr(described, "interactions", []):
        skip = getattr(interaction, "skip_tp", None)
        if skip is None or not _one_hot_irreps(getattr(skip, "irreps_in2", ""), n_elements):
            continue
        parts = [
            _element_axis_index(ins.path_shape, 1, start)
            for ins, start in _e3nn_instruction_offsets(skip)
            if ins.connection_mode == "uvw"
        ]
        add(skip.weight, parts)
    for product in getattr(described, "products", []):
        for contraction in product.symmetric_contractions.contractions:
            weights = [contraction.weights_max, *contraction.weights]
            for weight in weights:
                if weight.shape[0] == n_elements:
                    add(weight, [_element_axis_index(weight.shape, 0, 0)])
    if not blocks:
        raise SpeciesRankError(
            f"{type(described).__name__} has no element-dependent weights this module can read "
            "(node embedding, skip_tp, symmetric contraction): pass a mace-torch MACE or a student"
        )
    return blocks


def species_matrix(model: torch.nn.Module, blocks: Sequence[SpeciesBlock]) -> torch.Tensor:
    """W [n_elements, K]: every block's element-dependent entries side by side (a copy)."""
    named = dict(model.named_parameters())
    return torch.cat([named[b.name].detach().reshape(-1)[b.index] for b in blocks], dim=1)


def _truncate(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """The best rank-``rank`` approximation of ``matrix`` (Frobenius norm, SVD in float64)."""
    u, s, vh = torch.linalg.svd(matrix.double(), full_matrices=False)
    return ((u[:, :rank] * s[:rank]) @ vh[:rank]).to(matrix.dtype)


class SpeciesProjector:
    """Keeps a model's element-dependent weights at rank ``rank`` (training with
    ``TrainConfig.species_rank``): :meth:`project` replaces them, in place, by their best
    rank-``rank`` approximation.

    Raises:
        SpeciesRankError: ``rank`` < 1, or not below the number of elements (nothing to do).
    """

    def __init__(self, model: torch.nn.Module, rank: int) -> None:
        self.blocks = species_blocks(model)
        n_elements = int(self.blocks[0].index.shape[0])
        check_rank(rank, n_elements)
        self.rank = int(rank)
        named = dict(model.named_parameters())
        self.parameters = [named[b.name] for b in self.blocks]
        self.widths = [int(b.index.shape[1]) for b in self.blocks]
        self.indices = [b.index.to(p.device) for b, p in zip(self.blocks, self.parameters)]

    @torch.no_grad()
    def project(self) -> float:
        """Project in place; returns the relative Frobenius change ‖W − W_r‖ / ‖W‖."""
        matrix = torch.cat([p.reshape(-1)[i] for p, i in zip(self.parameters, self.indices)], dim=1)
        low = _truncate(matrix, self.rank)
        for parameter, index, part in zip(
            self.parameters, self.indices, low.split(self.widths, dim=1)
        ):
            parameter.view(-1)[index.reshape(-1)] = part.reshape(-1)
        norm = float(matrix.norm())
        return float((matrix - low).norm()) / norm if norm > 0 else 0.0


def check_rank(rank: int, n_elements: int) -> None:
    """Raise :class:`SpeciesRankError` unless 1 <= ``rank`` < ``n_elements``."""
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank < n_elements:
        raise SpeciesRankError(
            f"species rank must be an integer in [1, {n_elements - 1}] for a model of "
            f"{n_elements} elements, got {rank!r} (rank {n_elements} is the model itself)"
        )


def species_rank_summary(model: torch.nn.Module, rank: int) -> dict[str, Any]:
    """``rank``, ``n_elements`` and the ``singular_values`` of ``model``'s element-dependent
    weights (a training report's record of the rank it kept)."""
    blocks = species_blocks(model)
    singular = torch.linalg.svdvals(species_matrix(model, blocks).double())
    return {
        "rank": int(rank),
        "n_elements": int(blocks[0].index.shape[0]),
        "singular_values": [float(s) for s in singular],
    }


@dataclass(frozen=True)
class SpeciesRankReport:
    """What the rank-r projection kept and changed.

    Attributes:
        rank, n_elements: the rank kept and the number of elements.
        singular_values: of W [n_elements, K], descending (the element structure's spectrum).
        relative_change: ‖W − W_r‖ / ‖W‖ (Frobenius).
        parameters: n_elements · K element-dependent weights; ``factored_parameters``:
            n_elements · r + r · K, what the rank-r form stores.
        blocks: the parameters covered.
        rms_force_change, max_force_change: eV/Å on the given structures (None without).
        max_energy_change_per_atom: eV/atom on the given structures (None without).
    """

    rank: int
    n_elements: int
    singular_values: list[float]
    relative_change: float
    parameters: int
    factored_parameters: int
    blocks: list[str]
    rms_force_change: float | None = None
    max_force_change: float | None = None
    max_energy_change_per_atom: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _graphs(model: torch.nn.Module, structures: Sequence[Atoms]) -> list[dict[str, torch.Tensor]]:
    """One graph per structure, as the model wants it (a student's caps, or a MACE's cutoff)."""
    described: Any = model
    if hasattr(described, "build_graph"):
        return [described.build_graph(atoms) for atoms in structures]
    z_table = [int(z) for z in described.atomic_numbers]
    return [
        build_graph(atoms, cutoff=float(described.r_max), z_table=z_table,
                    dtype=described.r_max.dtype, min_distance=None)
        for atoms in structures
    ]  # fmt: skip


def _outputs(
    model: torch.nn.Module, graphs: Sequence[dict[str, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Energies per atom [n_graphs] eV/atom and forces [n_atoms_total, 3] eV/Å."""
    energies, forces = [], []
    for graph in graphs:
        data = dict(graph)
        data["positions"] = graph["positions"].detach().clone()  # mace sets requires_grad
        out = model(data, training=False, compute_force=True)
        energies.append(out["energy"].detach() / graph["positions"].shape[0])
        forces.append(out["forces"].detach())
    return torch.cat(energies), torch.cat(forces)


def low_rank_species(
    model: torch.nn.Module, rank: int, *, structures: Sequence[Atoms] = ()
) -> tuple[torch.nn.Module, SpeciesRankReport]:
    """A copy of ``model`` whose element-dependent weights have rank ``rank``, and a report.

    Args:
        model: a plain mace-torch MACE or a student (only read).
        rank: the number of shared element directions kept, 1 <= rank < n_elements.
        structures: where to measure the energy and force change (optional).

    Raises:
        SpeciesRankError: a rank out of range, or a model without element-dependent weights.
    """
    with model_construction():
        projected: Any = copy.deepcopy(model)
    projector = SpeciesProjector(projected, rank)
    matrix = species_matrix(model, projector.blocks)
    singular = torch.linalg.svdvals(matrix.double())
    change = projector.project()
    n_elements, width = matrix.shape
    changes: dict[str, float | None] = {}
    if structures:
        graphs = _graphs(model, structures)
        energy_before, forces_before = _outputs(model, graphs)
        energy_after, forces_after = _outputs(projected, graphs)
        delta = forces_after - forces_before
        changes = {
            "rms_force_change": float(delta.square().mean().sqrt()),
            "max_force_change": float(delta.norm(dim=1).max()),
            "max_energy_change_per_atom": float((energy_after - energy_before).abs().max()),
        }
    report = SpeciesRankReport(
        rank=int(rank), n_elements=int(n_elements),
        singular_values=[float(s) for s in singular], relative_change=change,
        parameters=int(n_elements * width),
        factored_parameters=int(n_elements * rank + rank * width),
        blocks=[b.name for b in projector.blocks], **changes,
    )  # fmt: skip
    return projected, report
