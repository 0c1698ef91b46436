"""``quantize_readouts(potential) -> (new potential, Int8ReadoutReport)``: an approximate lever.

Every linear map of the backbone's readouts (mace-torch's ``LinearReadoutBlock`` and the two
linears of ``NonLinearReadoutBlock``) becomes an
:class:`~macelerate.runtime.int8_linear.Int8Linear`: int8 weights with one scale per output, and
the int8 weight kernel for float32 inputs on CPU. The dense matrix of each e3nn linear is read
off by applying it to the identity, so the quantisation sees exactly the map the model computes.
Given probe structures the report measures the energy and force error against the source;
forces stay the gradient of the energy.

The readouts are a small share of a MACE step (a few matrix-vector products per atom against the
interactions' tensor products), so this lever mainly shrinks them; ``benchmarks/int8_readouts.py``
measures what it saves in time.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from ase import Atoms

from macelerate._mace import model_construction
from macelerate.records import TransformRecord
from macelerate.runtime.int8_linear import Int8Linear
from macelerate.transforms.tabulate import force_errors

if TYPE_CHECKING:
    from macelerate.models.potential import Potential


class QuantizationError(ValueError):
    """The model has no readouts this transform can quantise."""


@dataclass(frozen=True)
class Int8ReadoutReport:
    """What :func:`quantize_readouts` replaced and what it costs in accuracy.

    Attributes:
        linears: linear maps replaced.
        weights: weights quantised (dense matrices, zeros included).
        float_bytes: bytes of those weights in the source dtype.
        int8_bytes: bytes of the int8 codes plus float scales.
        max_weight_error: largest |W - dequantised W| over the largest |W| of its output row.
        probe_structures: structures the errors were measured on (0: not measured).
        max_force_error: eV/Å, largest force-component difference from the source potential.
        rms_force_error: eV/Å, RMS of those differences.
        max_energy_error: eV/atom, largest energy difference per atom.
    """

    linears: int
    weights: int
    float_bytes: int
    int8_bytes: int
    max_weight_error: float
    probe_structures: int = 0
    max_force_error: float | None = None
    rms_force_error: float | None = None
    max_energy_error: float | None = None


def dense_map(linear: torch.nn.Module, width: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weight [out, in], bias [out] or None) of a linear map ``[n, in] -> [n, out]``."""
    parameter = next(linear.parameters())
    with torch.no_grad():
        zero = linear(torch.zeros(1, width, dtype=parameter.dtype, device=parameter.device))[0]
        identity = torch.eye(width, dtype=parameter.dtype, device=parameter.device)
        weight = (linear(identity) - zero).T.contiguous()
    return weight, (zero.clone() if bool(zero.abs().max() > 0) else None)


def _e3nn_linears(module: torch.nn.Module) -> list[tuple[torch.nn.Module, str, Any]]:
    """(parent, attribute, e3nn Linear) for every e3nn ``o3.Linear`` inside ``module``."""
    found = []
    for parent in module.modules():
        for name, child in parent.named_children():
            if type(child).__name__ == "Linear" and hasattr(child, "irreps_in"):
                found.append((parent, name, child))
    return found


def _quantized_model(
    model: torch.nn.Module,
) -> tuple[torch.nn.Module, list[tuple[torch.Tensor, Int8Linear]]]:
    """A copy of ``model`` with its readouts' linears as :class:`Int8Linear` (pairs: old, new)."""
    with model_construction():
        model = copy.deepcopy(model)
    backbone: Any = getattr(model, "backbone", model)
    readouts = getattr(backbone, "readouts", None)
    if readouts is None:
        raise QuantizationError(f"{type(backbone).__name__} has no mace-torch readouts")
    replaced = []
    for parent, name, linear in _e3nn_linears(readouts):
        weight, bias = dense_map(linear, linear.irreps_in.dim)
        quantized = Int8Linear(weight, bias)
        setattr(parent, name, quantized)
        replaced.append((weight, quantized))
    if not replaced:
        raise QuantizationError("the readouts hold no e3nn linear maps to quantise")
    return model, replaced


def quantize_readouts(
    potential: Potential, *, probe: Sequence[Atoms] | None = None
) -> tuple[Potential, Int8ReadoutReport]:
    """A new Potential whose readout linears hold int8 weights (the source is unchanged).

    Args:
        potential: the source; quantise before applying a precision policy.
        probe: structures on which energy and force errors against ``potential`` are measured.

    Raises:
        QuantizationError: no mace-torch readouts, or a precision policy already applied.
    """
    if potential.precision is not None:
        raise QuantizationError("quantise the readouts before applying a precision policy")
    model, replaced = _quantized_model(potential.model)
    weight_error = max(
        float(((q.dequantized - w).abs().amax(dim=1) / w.abs().amax(dim=1).clamp(min=1e-300)).max())
        for w, q in replaced
    )
    candidate = potential.replace(model, record=TransformRecord("int8_readouts", False, {}))
    measured = force_errors(potential, candidate, probe) if probe else None
    report = Int8ReadoutReport(
        linears=len(replaced),
        weights=sum(w.numel() for w, _ in replaced),
        float_bytes=sum(w.numel() * w.element_size() for w, _ in replaced),
        int8_bytes=sum(
            q.codes.numel() + q.scales.numel() * q.scales.element_size() for _, q in replaced
        ),  # fmt: skip
        max_weight_error=weight_error,
        probe_structures=len(probe) if probe else 0,
        max_force_error=measured[0] if measured else None,
        rms_force_error=measured[1] if measured else None,
        max_energy_error=measured[2] if measured else None,
    )
    record = TransformRecord("int8_readouts", False, {}, asdict(report))
    return potential.replace(model, record=record), report
