"""``convert``: a mace-torch model -> a weights-only macelerate checkpoint, verified on the spot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.build import bulk

from macelerate.errors import ModelFileError
from macelerate.mace.config import describe_mace_model, rebuild_mace_model
from macelerate.models.checkpoint import file_sha256, make_provenance, save_checkpoint
from macelerate.models.loading import read_model_file
from macelerate.models.potential import Potential


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert` wrote and how closely the rebuilt model reproduces the original.

    Attributes:
        out: the checkpoint path.
        n_parameters: parameter count of the model.
        max_abs_energy_diff: |ΔE| in eV between original and rebuilt model on a probe structure.
        max_abs_force_diff: largest |ΔF| component in eV/Å on the same probe.
    """

    out: Path
    n_parameters: int
    max_abs_energy_diff: float
    max_abs_force_diff: float


def _probe_structure(atomic_numbers: list[int], r_max: float):
    """A rattled periodic cell holding every element of the model, with some neighbours."""
    rng = np.random.default_rng(0)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.numbers = [atomic_numbers[i % len(atomic_numbers)] for i in range(len(atoms))]
    atoms.rattle(0.05, rng=rng)
    return atoms


def convert(model_path: str | Path, out: str | Path) -> ConversionReport:
    """Read a mace-torch model file and write a weights-only macelerate checkpoint.

    The source is read with :func:`~macelerate.models.loading.read_model_file` (a ``.model``
    pickle is unpickled through the allow-list and rebuilt, so no code from it runs; see
    :mod:`macelerate.models.mace_pickle`). The checkpoint stores the model's config as plain data
    and its state dict; it loads with ``torch.load(weights_only=True)`` and rebuilds the same
    mace-torch module. Before writing, the model rebuilt from the checkpoint's contents is
    evaluated against the loaded one on a probe structure in float64.

    Args:
        model_path: a mace-torch ``.model`` file or a macelerate checkpoint.
        out: where to write the checkpoint (atomically).

    Raises:
        ModelFileError: the source cannot be read or described, or the rebuilt model disagrees.
    """
    module, source = read_model_file(model_path)
    config = describe_mace_model(module)
    state_dict = module.state_dict()
    rebuilt = rebuild_mace_model(config, state_dict)
    mace: Any = module  # r_max, atomic_numbers: buffers (macelerate.mace.contract)
    probe = _probe_structure([int(z) for z in mace.atomic_numbers], float(mace.r_max))
    exact: dict[str, Any] = {"dtype": torch.float64, "min_distance": None}
    original_pred = Potential.from_module(module, **exact).predict(probe)
    rebuilt_pred = Potential.from_module(rebuilt, **exact).predict(probe)
    d_energy = float(np.abs(original_pred.energy - rebuilt_pred.energy).max())
    d_force = float(np.abs(original_pred.forces - rebuilt_pred.forces).max())
    if d_energy > 1e-8 or d_force > 1e-8:
        raise ModelFileError(
            f"rebuilt model differs from {model_path} (|ΔE|={d_energy:.2e} eV, "
            f"|ΔF|={d_force:.2e} eV/Å); this mace-torch model cannot be converted faithfully"
        )
    provenance = make_provenance(
        str(model_path), source_kind=source.kind, source_sha256=file_sha256(model_path)
    )
    path = save_checkpoint(
        out,
        model_config=config,
        state_dict=rebuilt.state_dict(),
        provenance=provenance,
        transforms_applied=list(source.transforms_applied),
    )
    n_parameters = sum(p.numel() for p in module.parameters())
    return ConversionReport(path, n_parameters, d_energy, d_force)
