"""Neighbour graphs in mace-torch's input layout, built with vesin; caps and rotations.

Names are imported eagerly: the package needs torch, numpy, ASE and vesin, never mace-torch.
"""

from __future__ import annotations

from macelerate.graph.batch import GRAPH_KEYS, build_graph
from macelerate.graph.caps import cap_neighbors
from macelerate.graph.neighbors import radius_graph
from macelerate.graph.rotation import equigrad_norm, rotate_inputs, rotation_matrix

__all__ = [
    "GRAPH_KEYS",
    "build_graph",
    "cap_neighbors",
    "equigrad_norm",
    "radius_graph",
    "rotate_inputs",
    "rotation_matrix",
]
