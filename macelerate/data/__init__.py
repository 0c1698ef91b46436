"""Structures and their labels: reading data files (ASE formats, index syntax), built-in systems.

Names are imported eagerly: the package needs only ASE and numpy.
"""

from __future__ import annotations

from macelerate.data.labels import (
    LabelKeys,
    available_keys,
    get_label,
    read_structures,
    require_label,
    stress_3x3,
)
from macelerate.data.selection import parse_data_path
from macelerate.data.structures import graphene_oxide

__all__ = [
    "LabelKeys",
    "available_keys",
    "get_label",
    "graphene_oxide",
    "parse_data_path",
    "read_structures",
    "require_label",
    "stress_3x3",
]
