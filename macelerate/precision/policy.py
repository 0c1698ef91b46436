"""``PrecisionPolicy``: which dtype each part of a MACE model stores and computes in.

A policy is data (a frozen dataclass); :func:`macelerate.precision.apply_precision` turns it into a
model. The named presets follow what low-precision work on equivariant potentials recommends:
cast only the dense layers, keep the geometry, the Clebsch-Gordan algebra, the neighbour sums and
the energy sum in float32 or better, and never train in half precision.

Dtypes are strings: ``"float64"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from macelerate._dtypes import DTYPES
from macelerate.errors import MacelerateError

HALF_DTYPES = ("bfloat16", "float16")
MATMUL_PRECISIONS = ("highest", "high")


class PrecisionError(MacelerateError, ValueError):
    """A precision policy that is malformed or that the device cannot run."""


@dataclass(frozen=True)
class PrecisionPolicy:
    """Storage and compute dtypes of every block of a MACE model.

    Each field is a dtype name. Half-precision fields (``bfloat16``, ``float16``) are only
    allowed where rounding errors average out; fields marked *island* refuse them.

    Attributes:
        name: preset name, or ``"custom"``.
        forces_stress: positions, cell, shifts, edge vectors and the strain displacement; forces and
            stress are gradients accumulated into these leaves. float64 costs almost nothing
            (O(n_atoms + n_edges) work) and keeps forces from cancelling badly. *Island.*
        geometry: edge lengths and spherical harmonics Y_lm(r_ij). Y enters every message;
            float32 is accurate to ~1e-7 relative, half precision would break equivariance at the
            1e-3 level. *Island.*
        cg_tables: Clebsch-Gordan coefficients (fused convolution) and the U tables of the
            symmetric contractions; also the dtype the symmetric contraction computes in. Sums of
            many signed products: half precision loses the cancellations. *Island.*
        radial_basis: Bessel basis times the polynomial cutoff of each edge length. Cheap
            (n_edges x n_basis); keep float32 or better so the cutoff stays smooth. *Island.*
        radial_mlp: the per-edge MLP that turns the radial basis into tensor-product weights
            ([n_edges, n_paths x channels] output: the largest dense layer per edge). Half
            precision here is a real speed lever on GPUs; its errors are smooth in r.
        linear: the equivariant linear layers (node embedding, linear_up, the post-message linear,
            the element-dependent skip connection, the product linear). Per-irrep matrix
            multiplications over channels with float32 accumulation inside the matmul: the
            lever the MACE low-precision work names as safe.
        symmetric_contraction_weights: storage dtype of the per-element weights of the
            symmetric contractions; they are upcast to ``cg_tables`` for the contraction. Saves
            memory and tests the sensitivity to weight rounding; no speed gain on its own.
        readouts: the readout MLPs (node features -> per-atom energy). Their output is cast to
            ``energy_accumulation`` before any sum.
        neighbour_sum: the convolution tensor product and the sum of messages over neighbours
            (hundreds of terms per atom). *Island.*
        activations: node features passed between blocks, residual sums, and any module the
            policy does not name. *Island.*
        energy_accumulation: atomic reference energies, scale/shift, pair repulsion and the
            sums of per-atom energies into total energies. float64 costs O(n_atoms). *Island.*
        matmul_precision: ``"highest"`` (IEEE float32 matmuls) or ``"high"`` (TF32 tensor cores
            on NVIDIA GPUs from Ampere on: 10-bit mantissa inputs, float32 accumulation). It is
            set only inside the model call (``macelerate._torch_state.matmul_precision``); on
            CPU it is left at ``"highest"`` (reported).
    """

    name: str = "custom"
    forces_stress: str = "float64"
    geometry: str = "float32"
    cg_tables: str = "float32"
    radial_basis: str = "float32"
    radial_mlp: str = "float32"
    linear: str = "float32"
    symmetric_contraction_weights: str = "float32"
    readouts: str = "float32"
    neighbour_sum: str = "float32"
    activations: str = "float32"
    energy_accumulation: str = "float64"
    matmul_precision: str = "highest"

    ISLANDS = (
        "forces_stress",
        "geometry",
        "cg_tables",
        "radial_basis",
        "neighbour_sum",
        "activations",
        "energy_accumulation",
    )

    def __post_init__(self) -> None:
        problems = []
        for name in dtype_fields():
            value = getattr(self, name)
            if value not in DTYPES:
                problems.append(f"{name}={value!r} is not one of {', '.join(DTYPES)}")
            elif value in HALF_DTYPES and name in self.ISLANDS:
                problems.append(
                    f"{name}={value!r}: this block must stay float32 or float64 (see the "
                    "PrecisionPolicy docstring for why)"
                )
        if self.matmul_precision not in MATMUL_PRECISIONS:
            problems.append(f"matmul_precision must be one of {MATMUL_PRECISIONS}")
        if problems:
            raise PrecisionError("invalid precision policy: " + "; ".join(problems))

    def dtype(self, field_name: str) -> torch.dtype:
        """The torch dtype of one field."""
        return DTYPES[getattr(self, field_name)]

    @property
    def uses_half(self) -> bool:
        """True if any block stores or computes in bfloat16 or float16."""
        return any(getattr(self, name) in HALF_DTYPES for name in dtype_fields())

    def with_overrides(self, **overrides: str) -> PrecisionPolicy:
        """A copy with some fields changed (named ``"<preset>+custom"``)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise PrecisionError(f"unknown precision fields {unknown}; known: {dtype_fields()}")
        return replace(self, name=f"{self.name}+custom", **overrides)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PrecisionPolicy:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise PrecisionError(f"unknown precision fields {unknown}")
        return cls(**values)


def dtype_fields() -> tuple[str, ...]:
    """Names of the dtype fields of a policy, in declaration order."""
    skip = ("name", "matmul_precision")
    return tuple(f.name for f in fields(PrecisionPolicy) if f.name not in skip)


def _uniform(name: str, dtype: str, **extra: str) -> PrecisionPolicy:
    values = dict.fromkeys(dtype_fields(), dtype)
    values.update(forces_stress="float64", energy_accumulation="float64")
    values.update(extra)
    return PrecisionPolicy(name=name, **values)


PRESETS: dict[str, PrecisionPolicy] = {
    "fp64": _uniform("fp64", "float64"),
    "fp32": _uniform("fp32", "float32"),
    "tf32": _uniform("tf32", "float32", matmul_precision="high"),
    "bf16-linear": _uniform("bf16-linear", "float32", linear="bfloat16"),
    "fp16-linear": _uniform("fp16-linear", "float32", linear="float16"),
    "bf16-mixed": _uniform(
        "bf16-mixed",
        "float32",
        linear="bfloat16",
        radial_mlp="bfloat16",
        readouts="bfloat16",
        symmetric_contraction_weights="bfloat16",
    ),
}
"""Named presets. All keep positions/forces/stress and energy sums in float64. ``fp32`` differs
from mace-torch's float32 only there; ``tf32`` is ``fp32`` with TF32 matmuls (CUDA only);
``*-linear`` put the equivariant linear layers in half precision; ``bf16-mixed`` also the radial
MLP, the readouts and the stored symmetric-contraction weights."""


def resolve_policy(policy: str | PrecisionPolicy | dict[str, Any]) -> PrecisionPolicy:
    """A preset name, a policy, or a dict of fields (optionally with ``"preset"``) -> policy."""
    if isinstance(policy, PrecisionPolicy):
        return policy
    if isinstance(policy, str):
        if policy not in PRESETS:
            raise PrecisionError(
                f"unknown precision preset {policy!r}; choose one of {', '.join(PRESETS)}"
            )
        return PRESETS[policy]
    if isinstance(policy, dict):
        values = dict(policy)
        base = resolve_policy(values.pop("preset", "fp32"))
        return base.with_overrides(**values) if values else base
    raise PrecisionError(
        f"precision must be a preset name, a dict or a PrecisionPolicy, got {policy!r}"
    )
