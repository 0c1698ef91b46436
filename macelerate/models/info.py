"""``describe``: what a loaded model is (elements, cutoff, irreps, size, dtype)."""

from __future__ import annotations

from typing import Any

from ase.data import chemical_symbols

from macelerate.errors import ModelFileError
from macelerate.models.config import describe_mace_model
from macelerate.models.potential import Potential


def _irreps_summary(hidden_irreps: str) -> tuple[int, int]:
    """(channels, max L) of a mace hidden-irreps string such as ``"64x0e+64x1o"``."""
    from e3nn import o3

    irreps = o3.Irreps(hidden_irreps)
    return irreps[0].mul, max(ir.l for _, ir in irreps)


def describe(potential: Potential) -> dict[str, Any]:
    """Architecture facts of a loaded model, as plain data.

    Keys: elements, atomic_numbers, r_max (Å), hidden_irreps, channels, max_L, max_ell (spherical
    harmonics), correlation, num_interactions, num_parameters, dtype, heads, model_class, source.
    Fields a TorchScript export does not reveal are ``None``.
    """
    model = potential.model
    info: dict[str, Any] = {
        "model_class": type(model).__name__,
        "elements": [chemical_symbols[z] for z in potential.atomic_numbers],
        "atomic_numbers": potential.atomic_numbers,
        "r_max": potential.r_max,
        "num_interactions": int(model.num_interactions),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(potential.dtype).removeprefix("torch."),
        "heads": potential.heads,
        "source": potential.source.kind,
        "fused_interaction_blocks": potential.fused_blocks,
        "transforms_applied": list(potential.source.transforms_applied),
    }
    try:
        config = describe_mace_model(model)
    except ModelFileError:
        config = None
    if config is None:
        info.update(hidden_irreps=None, channels=None, max_L=None, max_ell=None, correlation=None)
        return info
    channels, max_l = _irreps_summary(config["hidden_irreps"])
    correlation = config["correlation"]
    info.update(
        hidden_irreps=config["hidden_irreps"],
        channels=channels,
        max_L=max_l,
        max_ell=config["max_ell"],
        correlation=correlation,
        avg_num_neighbors=config["avg_num_neighbors"],
        radial_MLP=config["radial_MLP"],
        num_bessel=config["num_bessel"],
    )
    return info
