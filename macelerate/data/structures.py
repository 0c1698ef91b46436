"""Built-in structures: graphene oxide sheets like the GO-MACE-23 data, made procedurally (the
demo and the bench's ``oxide-slab`` system use them)."""

from __future__ import annotations

import numpy as np
from ase import Atoms

EPOXY_HEIGHT = 1.26
"""Å, height of an epoxide O above the midpoint of its C-C bond."""


def graphene_oxide(
    *, repeat: tuple[int, int] = (7, 5), oxygen_fraction: float = 0.2, seed: int = 0
) -> Atoms:
    """A periodic graphene sheet with epoxide groups on random, non-touching C-C bonds.

    Args:
        repeat: repetitions of the 4-atom orthorhombic graphene cell along a and b.
        oxygen_fraction: epoxide O per C atom (at most ~0.25 with non-touching bonds).
        seed: random seed for the bond choice and side (above/below the sheet).

    Returns:
        A fully periodic ``Atoms`` (15 Å of vacuum along c) of ``4 * repeat[0] * repeat[1]`` C
        atoms plus the epoxide O atoms.
    """
    rng = np.random.default_rng(seed)
    # orthorhombic 4-atom graphene cell: a along x (2.46 Å), b along y (4.26 Å), 15 Å along z
    ortho = Atoms(
        "C4",
        scaled_positions=[[0, 0, 0.5], [0, 1 / 3, 0.5], [0.5, 0.5, 0.5], [0.5, 5 / 6, 0.5]],
        cell=[2.46, 2.46 * np.sqrt(3), 15.0],
        pbc=True,
    )
    atoms = ortho.repeat((repeat[0], repeat[1], 1))
    carbon = atoms.positions.copy()
    distances = atoms.get_all_distances(mic=True)
    bonds = [
        (i, j) for i in range(len(atoms)) for j in range(i + 1, len(atoms)) if distances[i, j] < 1.5
    ]
    taken: set[int] = set()
    target = int(round(oxygen_fraction * len(atoms)))
    oxygens = []
    for k in rng.permutation(len(bonds)):
        i, j = bonds[k]
        if i in taken or j in taken:
            continue
        vector = atoms.get_distance(i, j, mic=True, vector=True)
        side = 1.0 if rng.random() < 0.5 else -1.0
        oxygens.append(carbon[i] + 0.5 * vector + [0.0, 0.0, side * EPOXY_HEIGHT])
        taken.update((i, j))
        if len(oxygens) == target:
            break
    oxide = atoms + Atoms(f"O{len(oxygens)}", positions=oxygens) if oxygens else atoms
    oxide.pbc = True
    oxide.wrap()
    return oxide
