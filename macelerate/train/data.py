"""Labelled training data: graphs built once per structure, labels as tensors, batches by collation.

A :class:`LabelledData` holds, for every structure, its graph dictionary (from
:func:`macelerate.graph.batch.build_graph` with the model's cutoff, element table and graph options)
and its reference labels. A batch concatenates the cached per-structure graphs (:func:`collate`),
which gives exactly what ``build_graph`` would give for the list of structures, without recomputing
neighbour lists every step.

Hessian rows are stored in a data file as two labels (written by
:func:`macelerate.train.teacher.label_structures`):

* ``atoms.info["hessian_atoms"]``: [k] indices of the atoms whose rows are labelled;
* ``atoms.arrays["hessian_rows"]``: [n_atoms, 3k * 3]; row ``j`` holds ``H[rows, 3j:3j+3]``
  flattened, where ``rows`` are the 3k coordinates (x, y, z of each listed atom, in order) and
  ``H = d²E/dx²`` in eV/Å². Per-atom storage keeps the file plain extended XYZ.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from ase import Atoms
from tqdm import tqdm

from macelerate.data.labels import (
    LabelKeys,
    available_keys,
    energy_label,
    forces_label,
    get_label,
    require_label,
    stress_3x3,
    warn_if_implausible_energies,
)
from macelerate.errors import DataFileError, MacelerateError
from macelerate.graph.batch import build_graph
from macelerate.graph.model_options import (  # noqa: F401  (re-exported)
    model_edge_selection,
    model_graph_options,
    select_model_edges,
)

HESSIAN_ATOMS_KEY = "hessian_atoms"
HESSIAN_ROWS_KEY = "hessian_rows"


def hessian_rows_to_array(rows: np.ndarray, n_atoms: int) -> np.ndarray:
    """[3k, 3 n_atoms] Hessian rows -> the per-atom [n_atoms, 9k] layout of a data file."""
    k3 = rows.shape[0]
    return rows.reshape(k3, n_atoms, 3).transpose(1, 0, 2).reshape(n_atoms, k3 * 3)


def hessian_rows_from_array(array: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hessian_rows_to_array`: [n_atoms, 9k] -> [3k, 3 n_atoms]."""
    n_atoms = array.shape[0]
    return array.reshape(n_atoms, -1, 3).transpose(1, 0, 2).reshape(-1, 3 * n_atoms)


@dataclass(frozen=True)
class StructureLabels:
    """Reference labels of one structure (``None``: not labelled).

    Attributes:
        energy: total energy in eV.
        forces: [n_atoms, 3] eV/Å.
        stress: [3, 3] eV/Å³ (ASE sign convention).
        hessian_atoms: [k] atoms whose Hessian rows are labelled.
        hessian_rows: [3k, 3 n_atoms] rows of d²E/dx² in eV/Å².
    """

    energy: float | None = None
    forces: torch.Tensor | None = None
    stress: torch.Tensor | None = None
    hessian_atoms: torch.Tensor | None = None
    hessian_rows: torch.Tensor | None = None


@dataclass(frozen=True)
class HessianBlock:
    """Labelled Hessian rows of one structure of a batch.

    Attributes:
        graph: index of the structure in the batch.
        coordinates: [3k] flat indices (3 * atom + component) into the batch's positions.
        rows: [3k, 3 n_atoms_g] reference rows (eV/Å²) over the structure's own coordinates
            (``None`` when only predictions are wanted).
        start: index of the structure's first atom in the batch.
        n_atoms: atoms in the structure.
    """

    graph: int
    coordinates: torch.Tensor
    rows: torch.Tensor | None
    start: int
    n_atoms: int


@dataclass(frozen=True)
class Batch:
    """A collated graph with its labels; each label is ``None`` when no structure has it.

    Attributes:
        graph: the graph dictionary (see :mod:`macelerate.graph.batch`).
        energy: [G] eV.
        forces: [N, 3] eV/Å.
        stress: [G, 3, 3] eV/Å³ (zeros where ``stress_mask`` is False).
        stress_mask: [G] bool, True where a stress label exists.
        hessian: labelled Hessian rows, one block per structure that has them.
    """

    graph: dict[str, torch.Tensor]
    energy: torch.Tensor | None
    forces: torch.Tensor | None
    stress: torch.Tensor | None
    stress_mask: torch.Tensor | None
    hessian: tuple[HessianBlock, ...] = ()

    @property
    def n_atoms(self) -> torch.Tensor:
        """[G] number of atoms per structure."""
        return self.graph["ptr"][1:] - self.graph["ptr"][:-1]


def collate(graphs: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Concatenate single-structure graphs into one batch graph (same as one ``build_graph`` call).

    Args:
        graphs: graphs of one structure each, from :func:`build_graph` with the same options.
    """
    counts = [int(g["positions"].shape[0]) for g in graphs]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    cat = {key: torch.cat([g[key] for g in graphs]) for key in (
        "positions", "node_attrs", "atomic_numbers", "unit_shifts", "shifts", "cell", "pbc", "head"
    )}  # fmt: skip
    cat["edge_index"] = torch.cat(
        [g["edge_index"] + int(offset) for g, offset in zip(graphs, offsets[:-1])], dim=1
    )
    cat["batch"] = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(counts))
    cat["ptr"] = torch.from_numpy(offsets.astype(np.int64))
    if all("cap_threshold" in g for g in graphs):  # smooth-cap roots, a start for the model's
        cat["cap_threshold"] = torch.cat([g["cap_threshold"] for g in graphs])
    return cat


def _every(values: Sequence[torch.Tensor | None], name: str) -> list[torch.Tensor]:
    """``values`` when no structure of a batch lacks the label ``name``.

    Raises:
        DataFileError: some structures of the batch have the label and others do not.
    """
    present = [value for value in values if value is not None]
    if len(present) != len(values):
        raise DataFileError(
            f"{len(values) - len(present)} of {len(values)} structures of a batch lack {name} "
            "labels; label every structure or none"
        )
    return present


def read_labels(atoms: Atoms, keys: LabelKeys, *, index: int, source: str) -> StructureLabels:
    """Labels of one structure named by ``keys``.

    Raises:
        DataFileError: a label is missing, not numeric, NaN/inf or of the wrong shape.
    """
    n = len(atoms)
    energy = forces = stress = None
    if keys.energy:
        energy = energy_label(atoms, keys.energy, index=index, path=source)
    if keys.forces:
        forces = torch.from_numpy(forces_label(atoms, keys.forces, index=index, path=source))
    if keys.stress:
        value = require_label(atoms, keys.stress, index=index, path=source)
        stress = torch.from_numpy(stress_3x3(value, index=index, path=source))
    h_atoms = get_label(atoms, HESSIAN_ATOMS_KEY, index=index, path=source)
    h_rows = get_label(atoms, HESSIAN_ROWS_KEY, index=index, path=source)
    if (h_atoms is None) != (h_rows is None):
        raise DataFileError(
            f"{source}: structure {index} has only one of '{HESSIAN_ATOMS_KEY}' and "
            f"'{HESSIAN_ROWS_KEY}'; it has {available_keys(atoms)}. Write both or neither."
        )
    labels = StructureLabels(energy, forces, stress)
    if h_atoms is not None:
        rows = hessian_rows_from_array(np.asarray(h_rows).reshape(n, -1))
        atom_list = np.atleast_1d(h_atoms).astype(np.int64)
        if rows.shape[0] != 3 * atom_list.size:
            raise DataFileError(
                f"{source}: structure {index}: '{HESSIAN_ROWS_KEY}' holds {rows.shape[0]} rows "
                f"for {atom_list.size} atoms in '{HESSIAN_ATOMS_KEY}'; expected 3 per atom"
            )
        labels = replace(
            labels, hessian_atoms=torch.from_numpy(atom_list), hessian_rows=torch.from_numpy(rows)
        )
    return labels


def mix_labels(first: StructureLabels, second: StructureLabels, weight: float) -> StructureLabels:
    """``weight * first + (1 - weight) * second`` for energy, forces and stress present in both.

    Labels present in only one of them are taken from ``first``; Hessian rows from ``first``.
    """

    def mix(a: Any, b: Any) -> Any:
        return a if a is None or b is None else weight * a + (1.0 - weight) * b

    return replace(
        first,
        energy=mix(first.energy, second.energy),
        forces=mix(first.forces, second.forces),
        stress=mix(first.stress, second.stress),
    )


class LabelledData:
    """Structures with their graphs (built once) and reference labels.

    Args:
        structures: the structures (never modified).
        keys: names of the energy, forces and stress labels (``None`` entries are not read);
            Hessian rows are read whenever a structure carries them.
        graph_options: keyword arguments of :func:`build_graph` (``cutoff``, ``z_table``, and
            e.g. ``max_neighbors``); see :func:`model_graph_options`.
        edge_selection: keywords of :func:`macelerate.graph.smooth_cap.select_smooth_cap_edges`,
            applied to every graph (drops edges a smooth cap weighs 0); ``None``: none.
        dtype: float dtype of the graphs.
        source: name of the data used in error messages.
        progress: show a tqdm bar while the graphs are built.

    Raises:
        DataFileError: a structure lacks a requested label (the message lists what it has), or
            a label is not numeric, NaN/inf, or of the wrong shape.
        UnknownElementError: an element outside the model's ``z_table``.

    Warns:
        UserWarning: energy labels that do not look like energies in eV
            (:func:`macelerate.data.labels.warn_if_implausible_energies`).
    """

    def __init__(
        self,
        structures: Sequence[Atoms],
        *,
        keys: LabelKeys,
        graph_options: dict[str, Any],
        edge_selection: dict[str, Any] | None = None,
        dtype: torch.dtype = torch.float64,
        source: str = "<structures>",
        progress: bool = False,
    ) -> None:
        structures = list(structures)
        if not structures:
            raise DataFileError(f"{source}: no structures to train on")
        self.labels = [
            read_labels(atoms, keys, index=i, source=source) for i, atoms in enumerate(structures)
        ]  # all labels are checked before any graph is built
        if keys.energy:
            energies = [label.energy for label in self.labels if label.energy is not None]
            sizes = [len(atoms) for atoms in structures]  # every structure has an energy here
            warn_if_implausible_energies(energies, sizes, key=keys.energy, path=source)
        self.graphs = []
        bar = tqdm(structures, desc=f"graphs ({source})", unit="structure", disable=not progress)
        for i, atoms in enumerate(bar):
            try:
                graph = build_graph(atoms, dtype=dtype, **graph_options)
            except MacelerateError as error:  # name the file and structure in the message
                detail = str(error).removeprefix("structure ")
                raise type(error)(f"{source}: structure {i} {detail}") from error
            self.graphs.append(select_model_edges(graph, edge_selection))
        self.n_atoms = [len(atoms) for atoms in structures]

    @classmethod
    def _from_parts(cls, graphs: list, labels: list, n_atoms: list) -> LabelledData:
        data = cls.__new__(cls)
        data.graphs, data.labels, data.n_atoms = graphs, labels, n_atoms
        return data

    def __len__(self) -> int:
        return len(self.graphs)

    def subset(self, indices: Sequence[int]) -> LabelledData:
        """The structures at ``indices`` (graphs and labels shared, not copied)."""
        return self._from_parts(
            [self.graphs[i] for i in indices],
            [self.labels[i] for i in indices],
            [self.n_atoms[i] for i in indices],
        )

    def split(self, val_fraction: float, *, seed: int) -> tuple[LabelledData, LabelledData | None]:
        """Random (train, validation) split; validation is ``None`` for ``val_fraction == 0``.

        At least one structure goes to each side when ``0 < val_fraction < 1`` and there are two.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        n_val = int(round(val_fraction * len(self)))
        if val_fraction > 0 and len(self) >= 2:
            n_val = min(max(n_val, 1), len(self) - 1)
        if n_val == 0:
            return self, None
        order = np.random.default_rng(seed).permutation(len(self))
        return self.subset(sorted(order[n_val:])), self.subset(sorted(order[:n_val]))

    def batch(self, indices: Sequence[int], *, device: torch.device | str = "cpu") -> Batch:
        """Collate the structures at ``indices`` into a :class:`Batch` on ``device``."""
        graphs = [self.graphs[i] for i in indices]
        labels = [self.labels[i] for i in indices]
        graph = {key: value.to(device) for key, value in collate(graphs).items()}
        dtype = graph["positions"].dtype

        def stack(values: list, shape: tuple[int, ...]) -> torch.Tensor:
            return torch.stack(
                [torch.zeros(shape) if v is None else torch.as_tensor(v) for v in values]
            ).to(device=device, dtype=dtype)

        energy = forces = stress = mask = None
        if any(label.energy is not None for label in labels):
            energy = stack([label.energy for label in labels], ())
        if any(label.forces is not None for label in labels):
            forces = torch.cat(_every([label.forces for label in labels], "forces"))
            forces = forces.to(device=device, dtype=dtype)
        if any(label.stress is not None for label in labels):
            stress = stack([label.stress for label in labels], (3, 3))
            mask = torch.tensor([label.stress is not None for label in labels], device=device)
        return Batch(graph, energy, forces, stress, mask, self._hessian_blocks(indices, device))

    def _hessian_blocks(
        self, indices: Sequence[int], device: torch.device | str
    ) -> tuple[HessianBlock, ...]:
        blocks, start = [], 0
        dtype = self.graphs[indices[0]]["positions"].dtype
        for g, i in enumerate(indices):
            label = self.labels[i]
            if label.hessian_atoms is not None and label.hessian_rows is not None:  # both or none
                atoms = label.hessian_atoms + start
                coordinates = (3 * atoms[:, None] + torch.arange(3)).reshape(-1)  # [3k]
                rows = label.hessian_rows.to(device=device, dtype=dtype)
                blocks.append(HessianBlock(g, coordinates.to(device), rows, start, self.n_atoms[i]))
            start += self.n_atoms[i]
        return tuple(blocks)

    def batches(
        self,
        batch_size: int,
        *,
        order: Sequence[int] | None = None,
        device: torch.device | str = "cpu",
    ) -> Iterator[Batch]:
        """Consecutive batches of ``batch_size`` structures in ``order`` (default: as stored)."""
        order = list(range(len(self))) if order is None else list(order)
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start : start + batch_size], device=device)
