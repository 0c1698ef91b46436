"""``describe``: what a loaded model is (elements, cutoff, irreps, size, dtype; student extras)."""

from __future__ import annotations

from typing import Any

import torch
from ase.data import chemical_symbols

from macelerate._dtypes import dtype_name
from macelerate.errors import ModelFileError
from macelerate.mace.config import describe_mace_model
from macelerate.models.potential import Potential

STUDENT_FIELDS = (
    "max_neighbors", "smooth_cap", "cap_width", "direct_forces", "force_head_kind", "direct_stress",
    "confidence_head", "confidence_bins", "confidence_max_error", "zbl", "layers",
    "attention_heads",
)  # fmt: skip
"""StudentConfig fields ``describe`` reports for distilled students (caps, heads, confidence)."""


def _irreps_summary(hidden_irreps: str) -> tuple[int, int]:
    """(channels, max L) of a mace hidden-irreps string such as ``"64x0e+64x1o"``."""
    from e3nn import o3

    irreps = o3.Irreps(hidden_irreps)
    return irreps[0].mul, max(ir.l for _, ir in irreps)


def _num_interactions(backbone: torch.nn.Module) -> int | None:
    value = getattr(backbone, "num_interactions", None)
    return None if value is None else int(value)


def _architecture(backbone: torch.nn.Module) -> dict[str, Any]:
    """Irreps, channels, L, correlation ... of a mace-torch backbone (``None`` if unreadable)."""
    try:
        config = describe_mace_model(backbone)
    except ModelFileError:
        keys = ("hidden_irreps", "channels", "max_L", "max_ell", "correlation")
        return dict.fromkeys(keys)
    channels, max_l = _irreps_summary(config["hidden_irreps"])
    return {
        "hidden_irreps": config["hidden_irreps"],
        "channels": channels,
        "max_L": max_l,
        "max_ell": config["max_ell"],
        "correlation": config["correlation"],
        "avg_num_neighbors": config["avg_num_neighbors"],
        "radial_MLP": config["radial_MLP"],
        "num_bessel": config["num_bessel"],
    }


def describe(potential: Potential) -> dict[str, Any]:
    """Architecture facts of a loaded model, as plain data.

    Keys: model_class, elements, atomic_numbers, r_max (Å), num_interactions, num_parameters
    (all of them, heads included), dtype, heads (readout heads), source,
    fused_interaction_blocks, transforms_applied, and from the mace-torch backbone hidden_irreps,
    channels, max_L, max_ell (spherical harmonics), correlation, avg_num_neighbors, radial_MLP,
    num_bessel. A distilled student (``model_class`` ``"Student"``) adds ``student``: its
    neighbour cap (``max_neighbors``, ``smooth_cap``, ``cap_width`` Å), heads (``direct_forces``,
    ``force_head_kind``,
    ``direct_stress``, ``confidence_head``, ``confidence_bins``, ``confidence_max_error`` eV/Å)
    ``zbl`` and its per-layer kinds (``layers``, ``attention_heads``). Fields a TorchScript
    export does not reveal are ``None``.
    """
    model = potential.model
    backbone = getattr(model, "backbone", model)  # a Student's mace model, or the model
    info: dict[str, Any] = {
        "model_class": type(model).__name__,
        "elements": [chemical_symbols[z] for z in potential.atomic_numbers],
        "atomic_numbers": potential.atomic_numbers,
        "r_max": potential.r_max,
        "num_interactions": _num_interactions(backbone),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": dtype_name(potential.dtype),
        "heads": potential.heads,
        "source": potential.source.kind,
        "fused_interaction_blocks": potential.fused_blocks,
        "transforms_applied": list(potential.source.transforms_applied),
    }
    info.update(_architecture(backbone))
    student_config = getattr(model, "config", None)
    if backbone is not model and student_config is not None and hasattr(student_config, "to_dict"):
        fields = student_config.to_dict()
        info["student"] = {key: fields[key] for key in STUDENT_FIELDS if key in fields}
    return info
