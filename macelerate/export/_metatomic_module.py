"""The TorchScript module inside a metatomic export: metatomic Systems -> mace-torch -> energies.

This file has no ``from __future__ import annotations``: TorchScript compiles the methods below
and reads their annotations as Python types. It imports metatomic at import time; import it only
through :mod:`macelerate.export.metatomic`.

Graph contract (as :mod:`macelerate.graph.batch` builds it for mace-torch): metatomic's full
neighbour list holds pairs (i, j, S) with vector ``r[j] - r[i] + S @ cell``; mace-torch's
``edge_index`` is (sender, receiver) with vector ``r[receiver] - r[sender] + shifts``, so
``edge_index = [i, j]`` and ``shifts = S @ cell``. Shifts are computed from ``system.cell`` so that
the engine's strain derivative (stress) flows through them.
"""

# metatomic checks forward's annotations as typing.List / Dict / Optional, and metatensor's Labels
# (a TorchScript class) does not support `Labels | None`: keep the typing forms in this file.
# ruff: noqa: UP006, UP035, UP045

from typing import Dict, List, Optional, Tuple

import torch
from metatensor.torch import Labels, TensorBlock, TensorMap
from metatomic.torch import ModelOutput, NeighborListOptions, System

from macelerate.export._metatomic_conv import slot_edges
from macelerate.graph.smooth_cap import KEEP_MARGIN
from macelerate.graph.smooth_cap_torch import soft_count_thresholds

MAX_PADDING = 1.25
"""Slots per edge above which the graph is handed over unpadded (as macelerate's runtime)."""


class MaceMetatomicModule(torch.nn.Module):
    """Runs a (scripted) mace-torch model on metatomic systems; returns what the engine asks.

    Outputs: ``energy`` (per system, or per atom when requested) in eV, always differentiable
    with respect to positions and cell (the engine takes forces and stress by autograd); with a
    student's direct heads also ``non_conservative_force`` [n_atoms, 3] eV/Å and
    ``non_conservative_stress`` [n_systems, 3, 3] eV/Å³. With ``selected_atoms`` (domain
    decomposition) energies and forces cover the selected atoms only; the other atoms still act
    as neighbours. ``non_conservative_stress`` always sums every atom of a system.

    Args:
        mace: the mace-torch model (compiled with ``e3nn.util.jit.compile``).
        atomic_numbers: the model's elements, in its one-hot order.
        cutoff: neighbour-list cutoff in Å (the model's ``r_max``, + 2 × width with a smooth
            cap, whose thresholds count neighbours that far).
        head: readout head index of a multi-head model.
        force_head: a student's direct force head (reads ``node_feats``), or None.
        stress_head: a student's direct stress head, or None.
        edge_heads: a student's edge force head and its virial stress
            (:class:`~macelerate.export._metatomic_heads.ScriptableEdgeHeads`), or None.
        edge_stress: whether ``edge_heads`` gives the ``non_conservative_stress`` output.
        confidence: a student's confidence head
            (:class:`~macelerate.export._metatomic_heads.ScriptableConfidenceHead`) for the
            per-atom output ``macelerate::force_confidence`` (expected force error, eV/Å), or None.
        cap: a smooth cap's ``(max_neighbors, width, ceiling, keep_within)`` (k, δ, r_c + δ in
            Å, and the length below which every edge is kept, e.g. a ZBL range), or None: the
            edges the cap gives weight exactly 0 are dropped before ``mace`` runs
            (:meth:`_capped_edges`), as macelerate's runtime drops them.
        slot_layout: hand ``mace`` its edges in the fused convolution's [receiver, slot] layout
            (:func:`_slot_layout`), so that its convolutions gather nothing; only for models
            whose every per-edge term vanishes beyond the cutoff with its derivative (mace's
            envelope; not a smooth cap, whose count would see the padding, nor edge heads).
    """

    element_index: torch.Tensor  # [max Z + 1] int64: one-hot column of each Z (-1: not modelled)

    def __init__(
        self,
        mace: torch.nn.Module,
        atomic_numbers: List[int],
        cutoff: float,
        head: int = 0,
        force_head: Optional[torch.nn.Module] = None,
        stress_head: Optional[torch.nn.Module] = None,
        edge_heads: Optional[torch.nn.Module] = None,
        edge_stress: bool = False,
        confidence: Optional[torch.nn.Module] = None,
        cap: Optional[Tuple[int, float, float, float]] = None,
        slot_layout: bool = False,
    ):
        super().__init__()
        self.mace = mace
        table = torch.full((max(atomic_numbers) + 1,), -1, dtype=torch.long)
        table[torch.tensor(atomic_numbers, dtype=torch.long)] = torch.arange(len(atomic_numbers))
        self.register_buffer("element_index", table)
        self.n_elements = len(atomic_numbers)
        self.head = head
        self.neighbors = NeighborListOptions(cutoff=cutoff, full_list=True, strict=True)
        self.force_head = force_head
        self.stress_head = stress_head
        self.edge_heads = edge_heads
        self.edge_stress = edge_stress
        self.confidence = confidence
        self.capped = cap is not None
        self.cap_neighbors, self.cap_width, self.cap_ceiling, self.cap_keep_within = (
            (0, 0.0, 0.0, 0.0) if cap is None else cap
        )
        self.cap_keep_margin = KEEP_MARGIN  # an attribute: TorchScript reads no module globals
        self.slot_layout = slot_layout
        self.padding_length = 2.0 * cutoff + 10.0  # Å: beyond every cutoff of the model
        self.max_padding = MAX_PADDING  # an attribute: TorchScript reads no module globals

    def requested_neighbor_lists(self) -> List[NeighborListOptions]:
        return [self.neighbors]

    def _graph(self, systems: List[System]) -> Dict[str, torch.Tensor]:
        """The batched mace-torch input dictionary (keys of :mod:`macelerate.graph.batch`)."""
        device = systems[0].positions.device
        positions: List[torch.Tensor] = []
        numbers: List[torch.Tensor] = []
        edges: List[torch.Tensor] = []
        unit_shifts: List[torch.Tensor] = []
        shifts: List[torch.Tensor] = []
        cells: List[torch.Tensor] = []
        pbcs: List[torch.Tensor] = []
        batch: List[torch.Tensor] = []
        ptr: List[int] = [0]
        for index, system in enumerate(systems):
            pairs = system.get_neighbor_list(self.neighbors).samples.values  # [n_edges, 5] int32
            unit = pairs[:, 2:5].to(system.positions.dtype)  # [n_edges, 3]
            positions.append(system.positions)
            numbers.append(system.types.to(torch.long))
            edges.append(pairs[:, 0:2].T.to(torch.long) + ptr[-1])  # [2, n_edges]
            unit_shifts.append(unit)
            shifts.append(unit @ system.cell)  # [n_edges, 3] Å
            cells.append(system.cell)
            pbcs.append(system.pbc.reshape(1, 3))
            batch.append(torch.full((len(system),), index, dtype=torch.long, device=device))
            ptr.append(ptr[-1] + len(system))
        atomic_numbers = torch.cat(numbers)
        dtype = positions[0].dtype
        one_hot = torch.nn.functional.one_hot(self.element_index[atomic_numbers], self.n_elements)
        edge_index = torch.cat(edges, dim=1)
        all_unit_shifts = torch.cat(unit_shifts)
        all_shifts = torch.cat(shifts)
        all_positions = torch.cat(positions)
        if self.capped:
            edge_index, all_unit_shifts, all_shifts = self._capped_edges(
                all_positions, edge_index, all_unit_shifts, all_shifts
            )
        if self.slot_layout:
            edge_index, all_unit_shifts, all_shifts = self._slot_layout(
                edge_index, all_unit_shifts, all_shifts, ptr[-1]
            )
        return {
            "positions": all_positions,  # [n_atoms, 3] Å (a new tensor: inputs unchanged)
            "node_attrs": one_hot.to(dtype),  # [n_atoms, n_elements]
            "atomic_numbers": atomic_numbers,  # [n_atoms]
            "edge_index": edge_index,  # [2, n_edges] sender, receiver
            "unit_shifts": all_unit_shifts,  # [n_edges, 3]
            "shifts": all_shifts,  # [n_edges, 3] Å
            "cell": torch.cat(cells),  # [3 * n_systems, 3] Å
            "pbc": torch.cat(pbcs),  # [n_systems, 3]
            "batch": torch.cat(batch),  # [n_atoms]
            "ptr": torch.tensor(ptr, dtype=torch.long, device=device),  # [n_systems + 1]
            "head": torch.full((len(systems),), self.head, dtype=torch.long, device=device),
        }

    def _capped_edges(
        self,
        positions: torch.Tensor,
        edge_index: torch.Tensor,
        unit_shifts: torch.Tensor,
        shifts: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edges whose smooth-cap weight can be non-zero: shorter than their receiver's
        threshold + δ (or than ``cap_keep_within``). The others have weight and weight
        derivative exactly 0 and do not move any threshold, so dropping them changes no
        result; the model's cap then searches the same thresholds on the kept edges."""
        n_edges = edge_index.shape[1]
        if n_edges == 0:
            return edge_index, unit_shifts, shifts
        senders, receivers = edge_index[0], edge_index[1]
        vectors = positions.detach()[receivers] - positions.detach()[senders] + shifts.detach()
        lengths = torch.linalg.vector_norm(vectors, dim=1).to(torch.float64)
        thresholds = soft_count_thresholds(
            lengths, receivers, positions.shape[0], self.cap_neighbors, self.cap_width,
            self.cap_ceiling,
        )  # fmt: skip
        limit = thresholds[receivers] + self.cap_width * (1.0 + self.cap_keep_margin)
        keep = ((lengths < limit) | (lengths < self.cap_keep_within)).nonzero().squeeze(1)
        return edge_index[:, keep], unit_shifts[keep], shifts[keep]

    def _slot_layout(
        self, edge_index: torch.Tensor, unit_shifts: torch.Tensor, shifts: torch.Tensor, n: int
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The edges in the fused convolution's layout: receiver ``i``'s edges at positions
        ``i * K ... i * K + K - 1`` (K: the largest neighbour count), padded with self-edges
        (sender = receiver) whose shift puts them ``padding_length`` Å away, beyond the cutoff,
        where mace's envelope makes their weights and every derivative zero. The padding does
        not depend on the cell, so stress is unchanged. Graphs whose padding would exceed
        :data:`MAX_PADDING` slots per edge are returned as they are."""
        n_edges = edge_index.shape[1]
        if n_edges == 0 or n == 0:
            return edge_index, unit_shifts, shifts
        receivers = edge_index[1]
        counts = torch.bincount(receivers, minlength=n)
        k = int(counts.max())
        if n * k > self.max_padding * n_edges:
            return edge_index, unit_shifts, shifts
        edge_of_slot = slot_edges(receivers, counts, k)  # n_edges at padding slots
        atoms = torch.arange(n, device=receivers.device).repeat_interleave(k)
        senders = torch.cat([edge_index[0], atoms[:1]]).index_select(0, edge_of_slot)
        senders = torch.where(edge_of_slot == n_edges, atoms, senders)
        padding = torch.zeros((1, 3), dtype=shifts.dtype, device=shifts.device)
        far = padding + torch.tensor(
            [self.padding_length, 0.0, 0.0], dtype=shifts.dtype, device=shifts.device
        )
        return (
            torch.stack([senders, atoms]),
            torch.cat([unit_shifts, padding]).index_select(0, edge_of_slot),
            torch.cat([shifts, far]).index_select(0, edge_of_slot),
        )

    def forward(
        self,
        systems: List[System],
        outputs: Dict[str, ModelOutput],
        selected_atoms: Optional[Labels] = None,
    ) -> Dict[str, TensorMap]:
        results: Dict[str, TensorMap] = {}
        if len(systems) == 0 or len(outputs) == 0:
            return results
        graph = self._graph(systems)
        out = self.mace(graph, training=False, compute_force=False, compute_stress=False)
        batch = graph["batch"]
        ptr = graph["ptr"]
        n_atoms = batch.shape[0]
        atom = torch.arange(n_atoms, device=batch.device) - ptr[batch]  # index within its system
        samples = torch.stack([batch, atom], dim=1).to(torch.int32)  # [n_atoms, 2]
        keep = torch.ones(n_atoms, dtype=torch.bool, device=batch.device)
        if selected_atoms is not None:
            chosen = selected_atoms.values.to(torch.long)  # [n_selected, 2] (system, atom)
            keep = torch.zeros_like(keep)
            keep[ptr[chosen[:, 0]] + chosen[:, 1]] = True
        if "energy" in outputs:
            results["energy"] = self._energy(out, outputs["energy"], samples, keep, selected_atoms)
        node_feats = out["node_feats"]
        assert node_feats is not None
        force_head = self.force_head
        if "non_conservative_force" in outputs and force_head is not None:
            forces = force_head(node_feats, batch, len(systems))  # [n_atoms, 3] eV/Å
            results["non_conservative_force"] = self._per_atom_vectors(forces, samples, keep)
        stress_head = self.stress_head
        if "non_conservative_stress" in outputs and stress_head is not None:
            stress = stress_head(node_feats, batch, graph["cell"], len(systems))  # [n, 3, 3]
            results["non_conservative_stress"] = self._stress(stress)
        edge_heads = self.edge_heads
        asked = "non_conservative_force" in outputs or "non_conservative_stress" in outputs
        if edge_heads is not None and asked:
            forces, stress = edge_heads(node_feats, graph, len(systems))
            if "non_conservative_force" in outputs:
                results["non_conservative_force"] = self._per_atom_vectors(forces, samples, keep)
            if "non_conservative_stress" in outputs and self.edge_stress:
                results["non_conservative_stress"] = self._stress(stress)
        confidence = self.confidence
        if "macelerate::force_confidence" in outputs and confidence is not None:
            errors = confidence(node_feats)  # [n_atoms] eV/Å
            no_components = torch.jit.annotate(List[Labels], [])
            results["macelerate::force_confidence"] = self._tensor_map(
                "force_confidence",
                errors[keep].reshape(-1, 1),
                Labels(["system", "atom"], samples[keep]),
                no_components,
            )
        return results

    def _energy(
        self,
        out: Dict[str, Optional[torch.Tensor]],
        request: ModelOutput,
        samples: torch.Tensor,
        keep: torch.Tensor,
        selected_atoms: Optional[Labels],
    ) -> TensorMap:
        node_energy = out["node_energy"]  # [n_atoms] eV
        energy = out["energy"]  # [n_systems] eV
        assert node_energy is not None and energy is not None
        device = energy.device
        if request.sample_kind == "atom":
            values = node_energy[keep].reshape(-1, 1)
            labels = Labels(["system", "atom"], samples[keep])
        else:
            if selected_atoms is not None:
                energy = torch.zeros_like(energy).index_add(
                    0, samples[:, 0].to(torch.long)[keep], node_energy[keep]
                )
            values = energy.reshape(-1, 1)
            systems = torch.arange(energy.shape[0], dtype=torch.int32, device=device)
            labels = Labels(["system"], systems.reshape(-1, 1))
        no_components = torch.jit.annotate(List[Labels], [])
        return self._tensor_map("energy", values, labels, no_components)

    def _tensor_map(
        self, name: str, values: torch.Tensor, samples: Labels, components: List[Labels]
    ) -> TensorMap:
        """One block under the key ``_ = 0``, with the single property ``name = 0``."""
        zero = torch.zeros((1, 1), dtype=torch.int32, device=values.device)
        block = TensorBlock(
            values=values, samples=samples, components=components, properties=Labels([name], zero)
        )
        return TensorMap(Labels(["_"], zero), [block])

    def _xyz(self, name: str, device: torch.device) -> Labels:
        return Labels([name], torch.arange(3, dtype=torch.int32, device=device).reshape(-1, 1))

    def _per_atom_vectors(
        self, forces: torch.Tensor, samples: torch.Tensor, keep: torch.Tensor
    ) -> TensorMap:
        """``non_conservative_force``: values [n_selected, 3, 1] eV/Å, samples (system, atom)."""
        return self._tensor_map(
            "non_conservative_force",
            forces[keep].reshape(-1, 3, 1),
            Labels(["system", "atom"], samples[keep]),
            [self._xyz("xyz", forces.device)],
        )

    def _stress(self, stress: torch.Tensor) -> TensorMap:
        """``non_conservative_stress``: values [n_systems, 3, 3, 1] eV/Å³, samples (system)."""
        systems = torch.arange(stress.shape[0], dtype=torch.int32, device=stress.device)
        return self._tensor_map(
            "non_conservative_stress",
            stress.reshape(-1, 3, 3, 1),
            Labels(["system"], systems.reshape(-1, 1)),
            [self._xyz("xyz_1", stress.device), self._xyz("xyz_2", stress.device)],
        )
