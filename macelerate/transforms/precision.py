"""``apply_precision(potential, policy) -> (new potential, report)``: the precision lever.

Precision is a non-persistent transform: the outputs stay close to the model's own and the
weights on disk are not changed. The report says which block runs in which dtype, how many bytes
the parameters take, what the device cannot do well, and (given probe structures) what the policy
costs in accuracy against the potential it started from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms

from macelerate._mace import model_construction
from macelerate.precision.apply import (
    BlockPrecision,
    check_device_supports,
    strip_islands,
    wrap_blocks,
)
from macelerate.precision.islands import PrecisionIsland
from macelerate.precision.policy import PrecisionPolicy, resolve_policy
from macelerate.records import TransformRecord

if TYPE_CHECKING:
    from macelerate.models.potential import Potential


@dataclass(frozen=True)
class PrecisionDeviation:
    """Differences of a policy's outputs from a reference potential's on the same structures.

    Energies in meV/atom, forces in meV/Å (per Cartesian component).
    """

    n_structures: int
    n_atoms: int
    energy_per_atom_max_mev: float
    energy_per_atom_rms_mev: float
    force_rms_mev: float
    force_max_mev: float


@dataclass(frozen=True)
class PrecisionReport:
    """What :func:`apply_precision` did and what it costs."""

    policy: dict[str, Any]
    device: str
    blocks: tuple[BlockPrecision, ...]
    parameter_bytes_before: int
    parameter_bytes_after: int
    notes: tuple[str, ...] = ()
    deviation: PrecisionDeviation | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def parameter_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters of ``module`` in their storage dtypes."""
    return sum(p.numel() * p.element_size() for p in module.parameters())


def device_notes(policy: PrecisionPolicy, device: torch.device) -> list[str]:
    """What the device does with the policy that a user should know before timing it."""
    notes = []
    if policy.matmul_precision == "high" and device.type != "cuda":
        notes.append("TF32 exists only on NVIDIA GPUs: on this device tf32 runs as plain fp32")
    if device.type == "cpu" and "float16" in policy.to_dict().values():
        notes.append(
            "float16 matmuls on CPUs without AVX512-FP16/AMX-FP16 are emulated and can be "
            "orders of magnitude slower than float32; use bf16-linear on CPU"
        )
    if device.type == "cpu" and "bfloat16" in policy.to_dict().values():
        notes.append(
            "bfloat16 is fast on CPUs with AVX512-BF16 or AMX; on others it can be slower than "
            "float32 (measure with 'macelerate bench --lever precision:<preset>')"
        )
    return notes


def precision_deviation(
    reference: Potential, candidate: Potential, structures: Sequence[Atoms]
) -> PrecisionDeviation:
    """Energy and force differences of ``candidate`` from ``reference``, structure by structure."""
    energy_errors, force_errors = [], []
    for atoms in structures:
        ref, new = reference.predict(atoms), candidate.predict(atoms)
        energy_errors.append(float(new.energy[0] - ref.energy[0]) / len(atoms))
        force_errors.append((new.forces - ref.forces).ravel())
    energy = np.abs(np.asarray(energy_errors)) * 1000.0
    forces = np.concatenate(force_errors) * 1000.0
    return PrecisionDeviation(
        n_structures=len(structures),
        n_atoms=int(sum(len(a) for a in structures)),
        energy_per_atom_max_mev=float(energy.max()),
        energy_per_atom_rms_mev=float(np.sqrt(np.mean(energy**2))),
        force_rms_mev=float(np.sqrt(np.mean(forces**2))),
        force_max_mev=float(np.abs(forces).max()),
    )


def apply_precision(
    potential: Potential,
    policy: PrecisionPolicy | str | dict[str, Any],
    *,
    probe: Sequence[Atoms] | None = None,
) -> tuple[Potential, PrecisionReport]:
    """A new Potential that runs ``potential``'s model under ``policy``; ``potential`` is unchanged.

    Args:
        potential: the source (any dtype; a float64 source gives the most faithful comparison).
        policy: a :class:`PrecisionPolicy`, a preset name (``"fp64"``, ``"fp32"``, ``"tf32"``,
            ``"bf16-linear"``, ``"fp16-linear"``, ``"bf16-mixed"``) or a dict of fields with an
            optional ``"preset"`` to start from.
        probe: structures on which to measure the new potential against ``potential``
            (``report.deviation``); ``None`` skips the measurement.

    Raises:
        PrecisionError: malformed policy, a dtype the device cannot compute in, a TorchScript
            model, or a source whose weights were already rounded to half precision.
    """
    return _apply(potential, potential.copy_model(), policy, probe)


def apply_precision_owned(
    potential: Potential, policy: PrecisionPolicy | str | dict[str, Any]
) -> tuple[Potential, PrecisionReport]:
    """:func:`apply_precision` without the copy: the islands go into ``potential``'s own model.

    For callers that made ``potential`` themselves and drop it (:func:`macelerate.load`);
    ``potential`` must not be used afterwards.
    """
    return _apply(potential, potential.model, policy, None)


def _apply(
    potential: Potential,
    model: torch.nn.Module,
    policy: PrecisionPolicy | str | dict[str, Any],
    probe: Sequence[Atoms] | None,
) -> tuple[Potential, PrecisionReport]:
    policy = resolve_policy(policy)
    check_device_supports(policy, potential.device)
    bytes_before = parameter_bytes(potential.model)
    with model_construction():
        if any(isinstance(m, PrecisionIsland) for m in model.modules()):
            strip_islands(model, dtype=torch.float64)  # refuses half-precision weights
        backbone = getattr(model, "backbone", model)  # a Student's mace model, or the model
        blocks = wrap_blocks(backbone, policy)
    record = TransformRecord("precision", False, policy.to_dict(), {"blocks": len(blocks)})
    new = potential.replace(model, record=record, precision=policy)
    deviation = precision_deviation(potential, new, probe) if probe else None  # source intact
    report = PrecisionReport(
        policy=policy.to_dict(),
        device=str(potential.device),
        blocks=tuple(blocks),
        parameter_bytes_before=bytes_before,
        parameter_bytes_after=parameter_bytes(new.model),
        notes=tuple(device_notes(policy, potential.device)),
        deviation=deviation,
    )
    return new, report
