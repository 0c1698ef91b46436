"""``Potential``: a model ready to evaluate, plus read-only facts about it.

A Potential holds one model (a mace-torch ``MACE``/``ScaleShiftMACE``, a TorchScript export or a
:class:`~macelerate.models.student.Student`) that it owns, and answers energy/forces/stress
for graphs or ASE structures. Constructing one only stores: copying, casting and freezing a
user's module happen in :meth:`Potential.from_module`, and everything that changes how the model
runs is an explicit transform returning a *new* Potential plus a report
(:mod:`macelerate.transforms`: ``fuse``, ``apply_precision``, ``tabulate_radial``).
:func:`macelerate.load` composes them.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms

from macelerate._mace import model_construction, model_inference
from macelerate._torch_state import matmul_precision
from macelerate.errors import StructureError
from macelerate.graph.batch import build_graph
from macelerate.graph.model_options import (
    model_edge_selection,
    model_graph_options,
    select_model_edges,
)
from macelerate.graph.validation import DEFAULT_MIN_DISTANCE
from macelerate.runtime.allocator import heap_mode_for, release_heap_after

if TYPE_CHECKING:
    from macelerate.precision.policy import PrecisionPolicy
    from macelerate.records import TransformRecord


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch of structures, in numpy.

    Attributes:
        energy: [n_structures] total energies in eV.
        forces: [n_atoms, 3] forces in eV/Å, structures concatenated in input order.
        stress: [n_structures, 3, 3] stress in eV/Å³ (ASE sign convention), or None when not
            computed (non-periodic structures).
        ptr: [n_structures + 1] atom offsets: forces of structure i are ``forces[ptr[i]:ptr[i+1]]``.
    """

    energy: np.ndarray
    forces: np.ndarray
    stress: np.ndarray | None
    ptr: np.ndarray


@dataclass(frozen=True)
class ModelSource:
    """Where a Potential's model came from (file kind, path, provenance, applied transforms)."""

    kind: str
    path: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    transforms_applied: tuple[dict[str, Any], ...] = ()


def float_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of ``model``'s first floating parameter (float64 if it has none)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float64


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of ``model``'s first parameter or buffer (CPU if it has none)."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)  # lazy: no full list
    return torch.device("cpu") if first is None else first.device


def _edge_width(model: torch.nn.Module) -> int:
    """Largest per-edge feature width of the interactions (0 if the model does not say)."""
    if isinstance(model, torch.jit.ScriptModule):  # scripted module lists are not iterable
        return 0
    backbone = getattr(model, "backbone", model)
    widths = [
        getattr(getattr(getattr(block, "conv_tp", None), "irreps_out", None), "dim", 0)
        for block in getattr(backbone, "interactions", [])
    ]
    return max([int(w) for w in widths if isinstance(w, int)], default=0)


PREDICT_BATCH_ATOMS = 4096
"""Atoms per batched evaluation in :meth:`Potential.predict`."""


def _batches(structures: list[Atoms], max_atoms: int) -> list[list[Atoms]]:
    """Consecutive groups of structures with at most ``max_atoms`` atoms (at least one each)."""
    batches: list[list[Atoms]] = [[]]
    size = 0
    for atoms in structures:
        if batches[-1] and size + len(atoms) > max_atoms:
            batches.append([])
            size = 0
        batches[-1].append(atoms)
        size += len(atoms)
    return batches


class Potential(torch.nn.Module):
    """A mace-torch model behind a lean energy/forces/stress call.

    Graphs come from :func:`macelerate.build_graph` (vesin), not from mace-torch's
    AtomicData/torch_geometric collation. ``dtype`` and ``device`` are read off the model, so they
    stay true after ``.to()``.

    Args:
        model: the model to run, owned by this Potential from now on (use
            :meth:`from_module` to wrap a module you keep using elsewhere).
        head: readout head of a multi-head model (default: the model's first head).
        min_distance: Å; structures with closer atom pairs are rejected (``None``: no check).
        source: where the model came from.
        precision: the precision policy the model runs under (set by ``apply_precision``);
            inputs are cast to its ``forces_stress`` dtype.
        transforms: runtime transforms applied so far, oldest first.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        head: str | None = None,
        min_distance: float | None = DEFAULT_MIN_DISTANCE,
        source: ModelSource | None = None,
        precision: PrecisionPolicy | None = None,
        transforms: tuple[TransformRecord, ...] = (),
    ) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.transforms = tuple(transforms)
        self.source = source or ModelSource(kind="module")
        self.min_distance = min_distance
        described: Any = model  # mace-torch models and students carry these facts
        self.r_max = float(described.r_max)
        self.atomic_numbers = [int(z) for z in described.atomic_numbers]
        backbone = getattr(model, "backbone", model)  # a Student's mace model, or the model
        self.heads = list(getattr(backbone, "heads", None) or ["default"])
        if head is not None and head not in self.heads:
            raise ValueError(f"head {head!r} is not one of the model's heads {self.heads}")
        self.head = head or self.heads[0]
        self.has_confidence = getattr(model, "confidence_bins", None) is not None
        self.edge_width = _edge_width(model)  # of the widest per-edge tensor, for the allocator
        self._bytes_per_edge = self.edge_width * torch.empty((), dtype=self.dtype).element_size()

    @classmethod
    def from_module(
        cls,
        module: torch.nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        head: str | None = None,
        min_distance: float | None = DEFAULT_MIN_DISTANCE,
        source: ModelSource | None = None,
    ) -> Potential:
        """A Potential over a copy of ``module`` (never changed): cast, in eval mode, frozen.

        Args:
            module: a mace-torch model, TorchScript export or Student.
            device: where to run.
            dtype: ``torch.float64`` or ``torch.float32``; ``None`` keeps the module's own.
        """
        with model_construction():  # e3nn modules deep-copy through torch.jit.save/load
            model = copy.deepcopy(module)
            model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
        model.eval()
        for parameter in model.parameters():
            if parameter.is_leaf:  # TorchScript exports may hold non-leaf parameters
                parameter.requires_grad_(False)
        return cls(model, head=head, min_distance=min_distance, source=source)

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of positions, forces and stress (a policy's ``forces_stress``)."""
        if self.precision is not None:
            return self.precision.dtype("forces_stress")
        return float_dtype(self.model)

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return model_device(self.model)

    @property
    def fused_blocks(self) -> int:
        """Interaction blocks running macelerate's fused convolution."""
        from macelerate.runtime.fused_conv import FusedEdgeTensorProduct

        if isinstance(self.model, torch.jit.ScriptModule):
            return 0
        return sum(isinstance(m, FusedEdgeTensorProduct) for m in self.model.modules())

    def copy_model(self) -> torch.nn.Module:
        """A deep copy of the model (for transforms, which never change this Potential)."""
        with model_construction():
            return copy.deepcopy(self.model)

    def replace(
        self,
        model: torch.nn.Module,
        *,
        record: TransformRecord,
        precision: PrecisionPolicy | None = None,
    ) -> Potential:
        """A Potential with this one's facts, another model and one more transform record.

        Args:
            model: the transformed model (owned by the new Potential).
            record: what the transform did.
            precision: the new policy (default: this Potential's).
        """
        return Potential(
            model,
            head=self.head,
            min_distance=self.min_distance,
            source=self.source,
            precision=precision if precision is not None else self.precision,
            transforms=(*self.transforms, record),
        )

    def build_graph(
        self,
        atoms_or_list: Atoms | Sequence[Atoms],
        *,
        max_neighbors: int | None = None,
        first_index: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The graph dictionary of ``atoms_or_list`` for this model (cutoff, elements, dtype).

        Models with their own neighbour caps (students: ``graph_options()`` and, for the smooth
        cap, ``edge_selection()``) get exactly the graphs they were trained on; ``max_neighbors``
        (a hard k-nearest cap) then applies only if the model has none. ``first_index`` numbers
        the structures in error messages (see :func:`macelerate.build_graph`).
        """
        options = {"max_neighbors": max_neighbors, **model_graph_options(self.model)}
        graph = build_graph(
            atoms_or_list,
            dtype=self.dtype,
            device=self.device,
            head=self.heads.index(self.head),
            min_distance=self.min_distance,
            first_index=first_index,
            **options,
        )
        return select_model_edges(graph, model_edge_selection(self.model))

    def forward(
        self,
        graph: dict[str, torch.Tensor],
        *,
        compute_forces: bool = True,
        compute_stress: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Energies, forces and (optionally) stress of a graph batch.

        Args:
            graph: a batch from :meth:`build_graph` (never modified).
            compute_forces: forces by autograd of the energy.
            compute_stress: stress by the symmetric-displacement derivative (periodic structures).

        Returns:
            ``energy`` [n_graphs] eV, ``forces`` [n_atoms, 3] eV/Å, ``stress`` [n_graphs, 3, 3]
            eV/Å³ (only if requested), ``node_energy`` [n_atoms] eV, and for students with a
            confidence head ``force_confidence`` [n_atoms] eV/Å (expected force error). Tensors
            are detached.

        If the process opted into macelerate's allocator setting (``load(tune_allocator=True)``,
        :mod:`macelerate.runtime.allocator`), a step whose per-edge tensors are larger than that
        setting allows runs with glibc's default large-block policy instead.
        """
        data = {
            key: value.to(self.dtype) if value.is_floating_point() else value
            for key, value in graph.items()
        }
        data["positions"] = data["positions"].detach()  # mace sets requires_grad on this tensor
        heap_mode_for(graph["edge_index"].shape[1] * self._bytes_per_edge)
        tf32 = self.precision is not None and self.precision.matmul_precision != "highest"
        precision_context = (
            matmul_precision("high")
            if tf32 and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        # direct heads need no derivative of the energy: then no autograd graph is recorded
        derivatives = (compute_forces and getattr(self.model, "force_head", None) is None) or (
            compute_stress and getattr(self.model, "stress_head", None) is None
        )
        grad_mode = torch.enable_grad() if derivatives else torch.no_grad()
        with model_inference(), grad_mode, precision_context:
            out = self.model(
                data,
                training=False,
                compute_force=compute_forces,
                compute_stress=compute_stress,
            )
        result = {"energy": out["energy"].detach(), "node_energy": out["node_energy"].detach()}
        if compute_forces:
            result["forces"] = out["forces"].detach()
        if compute_stress:
            result["stress"] = out["stress"].detach()
        if out.get("confidence_logits") is not None and self.has_confidence:
            from macelerate.models.heads import expected_force_error

            logits = out["confidence_logits"].detach()
            bins: Any = self.model.confidence_bins
            result["force_confidence"] = expected_force_error(logits, bins)
        return result

    def predict(
        self,
        atoms_or_list: Atoms | Sequence[Atoms],
        *,
        compute_stress: bool | None = None,
        max_batch_atoms: int = PREDICT_BATCH_ATOMS,
    ) -> Prediction:
        """Energies, forces and stress of one or many structures, as numpy arrays.

        Structures are evaluated in batches of at most ``max_batch_atoms`` atoms (a larger single
        structure is its own batch), so memory stays bounded for long lists; after a batch with
        large per-edge tensors the allocator's kept heap is handed back
        (:func:`macelerate.runtime.allocator.release_heap_after`).

        Args:
            atoms_or_list: one ``ase.Atoms`` or a sequence of them.
            compute_stress: default: when every structure is periodic in all three directions.
            max_batch_atoms: atoms per batched evaluation.

        Raises:
            StructureError: bad structures, or stress requested for a non-periodic structure.
        """
        structures = [atoms_or_list] if isinstance(atoms_or_list, Atoms) else list(atoms_or_list)
        all_periodic = all(bool(atoms.pbc.all()) for atoms in structures)
        if compute_stress is None:
            compute_stress = all_periodic and len(structures) > 0
        elif compute_stress and not all_periodic:
            raise StructureError(
                "stress needs structures periodic in all three directions; "
                "pass compute_stress=False for molecules and slabs"
            )
        if not structures:
            self.build_graph(structures)  # raises the empty-input error
        energy: list[np.ndarray] = []
        forces: list[np.ndarray] = []
        stress: list[np.ndarray] = []
        counts: list[int] = []
        batches = _batches(structures, max_batch_atoms)
        for batch in batches:
            first = None if len(batches) == 1 else len(counts)
            graph = self.build_graph(batch, first_index=first)
            out = self.forward(graph, compute_stress=compute_stress)
            energy.append(out["energy"].double().cpu().numpy())
            forces.append(out["forces"].double().cpu().numpy())
            if compute_stress:
                stress.append(out["stress"].double().cpu().numpy())
            counts.extend(len(atoms) for atoms in batch)
            del out
            release_heap_after(graph["edge_index"].shape[1] * self._bytes_per_edge)
        return Prediction(
            energy=np.concatenate(energy),
            forces=np.concatenate(forces),
            stress=np.concatenate(stress) if compute_stress else None,
            ptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        )

    def extra_repr(self) -> str:
        names = [record.name for record in self.transforms]
        return (
            f"elements={self.atomic_numbers}, r_max={self.r_max}, dtype={self.dtype}, "
            f"device={self.device}, transforms={names}, "
            f"precision={self.precision.name if self.precision else None}, "
            f"source={self.source.kind}:{self.source.path}"
        )
