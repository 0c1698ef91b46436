"""Students for the export tests: tiny, built in-process, one per kind of part."""

from __future__ import annotations

import pytest
import torch

from macelerate.models.student import Student, build_student

STUDENT_BASE = {
    "atomic_numbers": [1, 6, 8, 14],
    "atomic_energies": [-1.0, -2.0, -3.0, -4.0],
    "channels": 4,
    "max_ell": 1,
    "r_max": 4.0,
    "radial_mlp": [8],
    "head_channels": 4,
    "confidence_bins": 10,
}
STUDENT_OPTIONS = {
    "capped": {"max_neighbors": 3, "confidence_head": True},
    "smooth": {"max_neighbors": 3, "smooth_cap": True},
    "direct": {"direct_forces": True, "direct_stress": True, "confidence_head": True},
    "edge": {
        "direct_forces": True,
        "direct_stress": True,
        "force_head_kind": "edge",
        "max_neighbors": 3,
        "smooth_cap": True,
        "max_L": 0,
        "edge_head_width": 8,
    },
    "hybrid": {
        "layers": ["mace", "attention"],
        "attention_heads": 2,
        "max_L": 0,
        "max_neighbors": 3,
        "smooth_cap": True,
    },
    "cartesian_layer": {"layers": ["mace", "cartesian"], "max_L": 0},
    "cartesian": {
        "direct_forces": True,
        "force_head_kind": "cartesian",
        "max_L": 0,
        "edge_head_width": 8,
    },
}


@pytest.fixture(scope="session")
def metatomic_ase():
    pytest.importorskip("metatomic.torch", reason="metatomic-torch is not installed")
    return pytest.importorskip("metatomic_ase", reason="metatomic-ase is not installed")


@pytest.fixture(scope="session")
def students() -> dict[str, Student]:
    """``capped`` (hard cap 3 + confidence), ``smooth`` (smooth cap), ``direct`` (force and
    stress heads + confidence), ``edge`` (pair-force head with virial stress, smooth cap 3),
    ``hybrid`` (mace then smoothed-attention layer, smooth cap 3), ``cartesian_layer`` (mace then
    a non-equivariant layer), ``cartesian`` (non-equivariant pair-force head, no stress): random
    4-channel students for H, C, O, Si (r_max 4 Å)."""
    built = {}
    for seed, (name, options) in enumerate(STUDENT_OPTIONS.items()):
        torch.manual_seed(seed)
        built[name] = build_student({**STUDENT_BASE, **options})
    return built
