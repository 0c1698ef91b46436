"""``Potential``: a mace-torch model behind a lean, exact energy/forces/stress call."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms

from macelerate._mace import quiet_model_construction
from macelerate._torch_state import matmul_precision
from macelerate.errors import StructureError
from macelerate.graph.batch import build_graph
from macelerate.graph.model_options import (
    model_edge_selection,
    model_graph_options,
    select_model_edges,
)
from macelerate.graph.validation import DEFAULT_MIN_DISTANCE
from macelerate.precision.apply import BlockPrecision, strip_islands, wrap_blocks
from macelerate.precision.islands import PrecisionIsland
from macelerate.precision.policy import PrecisionPolicy, resolve_policy
from macelerate.runtime.allocator import heap_mode_for
from macelerate.runtime.fused_conv import fuse_message_passing as fuse_model


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


def _float_dtype(model: torch.nn.Module) -> torch.dtype:
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float64


def _edge_width(model: torch.nn.Module) -> int:
    """Largest per-edge feature width of the interactions (0 if the model does not say)."""
    if isinstance(model, torch.jit.ScriptModule):  # scripted module lists are not iterable
        return 0
    widths = [
        getattr(getattr(getattr(block, "conv_tp", None), "irreps_out", None), "dim", 0)
        for block in getattr(model, "interactions", [])
    ]
    return max([int(w) for w in widths if isinstance(w, int)], default=0)


def _maybe(precision: str | None):
    """The matmul-precision context for TF32 policies on CUDA, else a no-op context."""
    return matmul_precision(precision) if precision else contextlib.nullcontext()


class Potential(torch.nn.Module):
    """A mace-torch model with exact MACE outputs and no per-step data-pipeline overhead.

    Holds its own copy of the model in evaluation mode with frozen parameters, so the caller's
    module is never changed. Graphs come from :func:`macelerate.build_graph` (vesin), not from
    mace-torch's AtomicData/torch_geometric collation. Move it with ``load(..., device=...)``
    rather than ``.to()``, so that ``device`` and ``dtype`` stay true.

    Args:
        model: a mace-torch model (``ScaleShiftMACE``, ``MACE`` or a TorchScript export).
        device: where to run.
        dtype: ``torch.float64`` or ``torch.float32``; ``None`` keeps the model's own dtype.
        head: name of the readout head for multi-head models (default: the model's first head).
        min_distance: Å; structures with closer atom pairs are rejected (``None``: no check).
        fuse_message_passing: replace the interaction blocks' edge tensor products by the fused
            tensor-product + neighbour-sum of :mod:`macelerate.runtime.fused_conv` (same results to
            floating-point reordering; no [n_edges, channels x (2l+1)] tensor is formed; 1.2-1.8x
            faster steps on a 2-core CPU). ``False`` runs the mace-torch modules unchanged.
        source: where the model came from.
        precision: a :class:`~macelerate.precision.PrecisionPolicy` or preset name (``"fp32"``,
            ``"bf16-linear"``...): per-block dtypes instead of one ``dtype`` (which must then be
            ``None``). Inputs are cast to the policy's ``forces_stress`` dtype.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        head: str | None = None,
        min_distance: float | None = DEFAULT_MIN_DISTANCE,
        fuse_message_passing: bool = True,
        source: ModelSource | None = None,
        precision: PrecisionPolicy | str | None = None,
    ) -> None:
        super().__init__()
        policy = resolve_policy(precision) if precision is not None else None
        if policy is not None and dtype is not None:
            raise ValueError("pass either dtype (one dtype for the whole model) or precision")
        with quiet_model_construction():  # e3nn modules deep-copy through torch.jit.save/load
            model = copy.deepcopy(model)
            if any(isinstance(m, PrecisionIsland) for m in model.modules()):
                strip_islands(model, dtype=torch.float64)  # refuses half-precision weights
            model = model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
        model.eval()
        backbone = getattr(model, "backbone", model)  # a Student's mace model, or the model
        self.fused_blocks = fuse_model(backbone) if fuse_message_passing else 0
        self.precision = policy
        self.precision_blocks: list[BlockPrecision] = []
        if policy is not None:
            with quiet_model_construction():
                self.precision_blocks = wrap_blocks(backbone, policy)
        self.edge_width = _edge_width(backbone)
        self.has_confidence = getattr(model, "confidence_bins", None) is not None
        itemsize = torch.empty((), dtype=_float_dtype(model)).element_size()
        self._bytes_per_edge = self.edge_width * itemsize  # of the widest per-edge tensor
        for parameter in model.parameters():
            if parameter.is_leaf:  # TorchScript exports may hold non-leaf parameters
                parameter.requires_grad_(False)
        self.model = model
        self.dtype = policy.dtype("forces_stress") if policy else _float_dtype(model)
        self.device = torch.device(device)
        use_tf32 = policy is not None and policy.matmul_precision != "highest"
        self._matmul_precision = "high" if use_tf32 and self.device.type == "cuda" else None
        self.r_max = float(model.r_max)
        self.atomic_numbers = [int(z) for z in model.atomic_numbers]
        self.heads = list(getattr(backbone, "heads", None) or ["default"])
        if head is not None and head not in self.heads:
            raise ValueError(f"head {head!r} is not one of the model's heads {self.heads}")
        self.head = head or self.heads[0]
        self.min_distance = min_distance
        self.source = source or ModelSource(kind="module")

    def build_graph(
        self, atoms_or_list: Atoms | Sequence[Atoms], *, max_neighbors: int | None = None
    ) -> dict[str, torch.Tensor]:
        """The graph dictionary of ``atoms_or_list`` for this model (cutoff, elements, dtype).

        Models with their own neighbour caps (students: ``graph_options()`` and, for the smooth
        cap, ``edge_selection()``) get exactly the graphs they were trained on; ``max_neighbors``
        (a hard k-nearest cap) then applies only if the model has none.
        """
        options = {"max_neighbors": max_neighbors, **model_graph_options(self.model)}
        graph = build_graph(
            atoms_or_list,
            dtype=self.dtype,
            device=self.device,
            head=self.heads.index(self.head),
            min_distance=self.min_distance,
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
        """
        data = {
            key: value.to(self.dtype) if value.is_floating_point() else value
            for key, value in graph.items()
        }
        data["positions"] = data["positions"].detach()  # mace sets requires_grad on this tensor
        heap_mode_for(graph["edge_index"].shape[1] * self._bytes_per_edge)
        with torch.enable_grad(), _maybe(self._matmul_precision):
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
            result["force_confidence"] = expected_force_error(logits, self.model.confidence_bins)
        return result

    def predict(
        self, atoms_or_list: Atoms | Sequence[Atoms], *, compute_stress: bool | None = None
    ) -> Prediction:
        """Energies, forces and stress of one or many structures, as numpy arrays.

        Args:
            atoms_or_list: one ``ase.Atoms`` or a sequence of them.
            compute_stress: default: when every structure is periodic in all three directions.

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
        graph = self.build_graph(structures)
        out = self.forward(graph, compute_stress=compute_stress)
        return Prediction(
            energy=out["energy"].double().cpu().numpy(),
            forces=out["forces"].double().cpu().numpy(),
            stress=out["stress"].double().cpu().numpy() if compute_stress else None,
            ptr=graph["ptr"].cpu().numpy(),
        )

    def extra_repr(self) -> str:
        return (
            f"elements={self.atomic_numbers}, r_max={self.r_max}, dtype={self.dtype}, "
            f"device={self.device}, fused_blocks={self.fused_blocks}, "
            f"precision={self.precision.name if self.precision else None}, "
            f"source={self.source.kind}:{self.source.path}"
        )
