"""``Calculator``: an ASE calculator over a :class:`~macelerate.models.potential.Potential`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator as AseCalculator
from ase.calculators.calculator import PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from macelerate._mace import model_inference
from macelerate.models.loading import load
from macelerate.models.potential import Potential


class Calculator(AseCalculator):
    """ASE calculator for a mace-torch model: energy, free_energy, forces, stress (Voigt).

    It keeps one loaded model and never changes torch's global state (unlike mace-torch's
    calculator, it does not set the default dtype). Stress is computed only when ASE asks for it,
    and only for structures periodic in all three directions.

    Args:
        model_or_path: a :class:`Potential`, an ``nn.Module`` or a model file path.
        **load_options: passed to :func:`macelerate.load` (``device``, ``dtype``, ``head``, ...).

    Example::

        atoms.calc = Calculator("model.model", dtype="float64")
        forces = atoms.get_forces()  # [n_atoms, 3] eV/Å
    """

    implemented_properties = [
        "energy", "free_energy", "forces", "stress", "energies", "force_confidence"
    ]  # fmt: skip
    """``force_confidence``: per-atom expected force error in eV/Å, for students with a
    confidence head (see :mod:`macelerate.models.heads`); other models raise ASE's
    ``PropertyNotImplementedError`` for it."""

    def __init__(
        self, model_or_path: Potential | torch.nn.Module | str | Path, **load_options: Any
    ) -> None:
        """Wrap a model for ASE.

        Args:
            model_or_path: a loaded :class:`~macelerate.models.potential.Potential` (used as
                is when no ``load_options`` are given), an ``nn.Module`` (copied, never
                changed), or a path to a mace-torch ``.model`` file (read without running code
                from it) or a macelerate checkpoint.
            **load_options: keyword options of :func:`macelerate.load`: ``device`` (``"cpu"``,
                ``"cuda"``), ``dtype`` (``"float64"`` default, ``"float32"``, ``None``),
                ``head``, ``allow_pickle``, ``min_distance`` (Å), ``fuse_message_passing``,
                ``precision`` ...; unknown options raise ``TypeError``.

        Raises:
            ModelFileError: the file cannot be read as a model (see :func:`macelerate.load`).
        """
        super().__init__()
        if isinstance(model_or_path, Potential) and not load_options:
            self.potential = model_or_path
        else:
            self.potential = load(model_or_path, **load_options)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **load_options: Any) -> Calculator:
        """A calculator for a weights-only macelerate checkpoint (refuses pickles and TorchScript).

        Args:
            path: a checkpoint written by ``macelerate convert`` (or prune, distill, ...).
            **load_options: as for :class:`Calculator`, except ``allow_pickle``.
        """
        return cls(path, allow_pickle=False, **load_options)

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: list[str] | None = None,
        system_changes: list[str] = all_changes,
    ) -> None:
        """Fill ``self.results`` for ``atoms`` (ASE calls this; use ``atoms.get_forces()`` etc.).

        Results: ``energy``/``free_energy`` in eV, ``energies`` [n_atoms] eV, ``forces``
        [n_atoms, 3] eV/Å, ``stress`` [6] eV/Å³ (Voigt, periodic cells only) and, for students
        with a confidence head, ``force_confidence`` [n_atoms] eV/Å. Safe to call while other
        threads build models: the forward pass holds
        :func:`macelerate._mace.model_inference`.
        """
        super().calculate(atoms, properties, system_changes)
        properties = properties or ["energy"]
        want_stress = "stress" in properties
        if "force_confidence" in properties and not self.potential.has_confidence:
            raise PropertyNotImplementedError(
                "force_confidence needs a student with a confidence head "
                "(macelerate distill --confidence-head)"
            )
        if want_stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError(
                "stress is defined only for structures periodic in all three directions"
            )
        graph = self.potential.build_graph(self.atoms)
        with model_inference():  # no other thread builds a model (fx patches, dtype) meanwhile
            out = self.potential.forward(graph, compute_stress=want_stress)
        energy = float(out["energy"][0])
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out["node_energy"].double().cpu().numpy(),
            "forces": out["forces"].double().cpu().numpy(),
        }
        if "force_confidence" in out:
            self.results["force_confidence"] = out["force_confidence"].double().cpu().numpy()
        if want_stress:
            stress = out["stress"][0].double().cpu().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(np.asarray(stress))
