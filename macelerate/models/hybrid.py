"""Hybrid students: per-layer choice of MACE, smoothed-attention or non-equivariant layers.

A student's ``StudentConfig.layers`` names one kind per interaction:

* ``"mace"``: mace-torch's equivariant interaction + symmetric-contraction product (body order
  ``correlation + 1``, spherical harmonics up to ``max_ell``);
* ``"attention"``: :class:`~macelerate.models.scalar_blocks.SmoothAttentionInteraction`,
  invariant, no tensor products;
* ``"cartesian"``: :class:`~macelerate.models.scalar_blocks.CartesianInteraction`, an MLP on
  lab-frame edge directions (not equivariant; train with equigrad or rotation augmentation).

MACE layers come first (``mace, attention`` is a hybrid; ``attention, mace`` is refused): the
scalar layers read only the invariant part of their input and write scalars, which a MACE layer
after them could not use as a full equivariant input.

:func:`install_layers` rebuilds a freshly constructed backbone in place, before any weight is
loaded, so a checkpoint's ``StudentConfig`` rebuilds the same modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from macelerate.models.scalar_blocks import (
    CartesianInteraction,
    ScalarLinearReadout,
    ScalarUpdate,
    SmoothAttentionInteraction,
)

LAYER_KINDS = ("mace", "attention", "cartesian")
"""The per-layer kinds a student may use."""
EQUIVARIANT_KINDS = ("mace", "attention")
"""Kinds whose energies are rotation invariant by construction."""


def layer_kinds_problem(layers: Sequence[str], num_interactions: int) -> str | None:
    """Why ``layers`` cannot describe a student with ``num_interactions`` layers (None: fine)."""
    if not layers:
        return None
    unknown = sorted({kind for kind in layers if kind not in LAYER_KINDS})
    if unknown:
        return f"layers {unknown} unknown; each layer is one of {list(LAYER_KINDS)}"
    if len(layers) != num_interactions:
        return f"layers names {len(layers)} kinds for {num_interactions} interactions"
    first_scalar = next((i for i, kind in enumerate(layers) if kind != "mace"), len(layers))
    if "mace" in layers[first_scalar:]:
        return (
            f"layers {list(layers)}: mace layers must come before attention/cartesian ones (a "
            "scalar layer passes on invariant features only)"
        )
    return None


def _irreps(value: Any) -> Any:
    from macelerate.models.heads import _e3nn

    return _e3nn().o3.Irreps(str(value))


def _output_irreps(product: Any) -> Any:
    irreps = getattr(product, "irreps_out", None)
    return _irreps(irreps if irreps is not None else product.linear.irreps_out)


def install_layers(backbone: Any, *, layers: Sequence[str], heads: int) -> None:
    """Replace the scalar layers of a freshly built ``ScaleShiftMACE`` (changed in place).

    Layer t of kind attention/cartesian gets a new interaction, a :class:`ScalarUpdate` as its
    product and, unless it is the last layer, a linear scalar readout (the last layer's
    mace-torch readout already reads ``C x 0e``). The radial embedding is switched to
    ``apply_cutoff=False`` so every interaction receives the envelope as ``cutoff``.

    Args:
        backbone: a mace-torch ``ScaleShiftMACE`` straight from its constructor.
        layers: one kind per interaction (see :data:`LAYER_KINDS`); all ``"mace"``: no change.
        heads: attention heads.
    """
    if all(kind == "mace" for kind in layers):
        return
    radial = getattr(backbone.radial_embedding, "inner", backbone.radial_embedding)
    radial.apply_cutoff = False  # read by mace-torch's RadialEmbeddingBlock.forward
    channels = int(_irreps(backbone.products[-1].linear.irreps_out).dim)  # last layer: C x 0e
    num_basis = int(radial.out_dim)
    num_elements = int(backbone.node_embedding.linear.irreps_in.dim)
    avg_num_neighbors = float(backbone.interactions[0].avg_num_neighbors)
    last = len(layers) - 1
    for index, kind in enumerate(layers):
        if kind == "mace":
            continue
        irreps_in = (
            _irreps(backbone.node_embedding.linear.irreps_out)
            if index == 0
            else _output_irreps(backbone.products[index - 1])
        )
        if kind == "attention":
            interaction: torch.nn.Module = SmoothAttentionInteraction(
                irreps_in, channels=channels, num_basis=num_basis, heads=heads
            )
        else:
            interaction = CartesianInteraction(
                irreps_in, channels=channels, num_basis=num_basis,
                avg_num_neighbors=avg_num_neighbors,
            )  # fmt: skip
        backbone.interactions[index] = interaction
        backbone.products[index] = ScalarUpdate(channels=channels, num_elements=num_elements)
        if index != last:
            backbone.readouts[index] = ScalarLinearReadout(channels)
