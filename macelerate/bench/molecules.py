"""A molecular liquid from a model's elements: small molecules on a jittered lattice of sites."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.build import molecule
from ase.data import chemical_symbols, covalent_radii

from macelerate.bench.repeat import choose_repeat

LIQUID_MOLECULES = ("H2O", "CH4", "CH3OH", "NH3", "SiH4", "SH2", "HF", "HCl", "CO2", "PH3")
"""Molecules from ``ase.build.molecule`` (G2 geometries), in order of preference."""
MAX_KINDS = 3
"""At most this many different molecules in one liquid."""
GAP = 1.0
"""Å between the covalent-radius spheres of neighbouring molecules' bounding spheres."""
JITTER = 0.1
"""Å, half-width of the uniform noise on each site coordinate."""
FCC_SITES = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


def liquid_molecules(atomic_numbers: Sequence[int]) -> dict[str, Atoms]:
    """Up to :data:`MAX_KINDS` molecules made only of ``atomic_numbers``, centred at the origin.

    Molecules of :data:`LIQUID_MOLECULES` come first; a model for which none fits gets
    homonuclear dimers of its heaviest elements (bond 2 x covalent radius, at least 0.74 Å).

    Returns:
        Name -> molecule, e.g. ``{"H2O": ..., "CH4": ..., "CH3OH": ...}``.
    """
    allowed = set(atomic_numbers)
    chosen = {name: molecule(name) for name in LIQUID_MOLECULES}
    chosen = {k: m for k, m in chosen.items() if set(m.numbers) <= allowed}
    chosen = dict(list(chosen.items())[:MAX_KINDS])
    if not chosen:
        for z in sorted(allowed, reverse=True)[:MAX_KINDS]:
            bond = max(2 * covalent_radii[z], 0.74)
            chosen[f"{chemical_symbols[z]}2"] = Atoms([z, z], positions=[[0, 0, 0], [0, 0, bond]])
    for m in chosen.values():
        m.positions = m.positions - (m.positions.max(axis=0) + m.positions.min(axis=0)) / 2
    return chosen


def _radius(m: Atoms) -> float:
    """Å, radius of the sphere about the origin holding every atom's covalent sphere."""
    return float(np.max(np.linalg.norm(m.positions, axis=1) + covalent_radii[m.numbers]))


def _rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 3, 3] uniformly random rotation matrices (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def molecular_liquid(
    atomic_numbers: Sequence[int], n_atoms: int, *, seed: int = 0
) -> tuple[Atoms, str, tuple[int, int, int]]:
    """Randomly oriented molecules on a jittered fcc lattice of sites, >= ``n_atoms`` atoms.

    Neighbouring sites sit 2 x (largest molecular radius) + :data:`GAP` apart, so covalent
    spheres of different molecules never touch (about 1.2 Å between the closest atoms at
    worst); for water, methane and methanol that is ~35 Å³ per molecule, a liquid's density.
    Every site holds a molecule; the kinds alternate and are shuffled over the sites.

    Args:
        atomic_numbers: the model's elements.
        n_atoms: atoms wanted (at least).
        seed: seed of orientations, jitter and kind order.

    Returns:
        The periodic structure, its molecules (e.g. ``"H2O/CH4/CH3OH"``) and the repetitions of
        the 4-site fcc cell.
    """
    named = liquid_molecules(atomic_numbers)
    kinds = list(named.values())
    sizes = [len(m) for m in kinds]
    cycle = sum(sizes)
    whole, rest = divmod(n_atoms, cycle)
    partial = np.cumsum([0, *sizes])
    n_molecules = whole * len(kinds) + int(np.searchsorted(partial, rest))
    spacing = 2 * max(_radius(m) for m in kinds) + GAP
    a = spacing * math.sqrt(2)
    repeat = choose_repeat((a, a, a), len(FCC_SITES), max(n_molecules, 1))
    grid = np.stack(np.meshgrid(*[np.arange(r) for r in repeat], indexing="ij"), -1).reshape(-1, 3)
    sites = (grid[:, None, :] + FCC_SITES[None]).reshape(-1, 3) * a  # [n_sites, 3] Å
    rng = np.random.default_rng(seed)
    sites = sites + rng.uniform(-JITTER, JITTER, size=sites.shape)
    kind_of_site = rng.permutation(np.arange(len(sites)) % len(kinds))
    rotations = _rotations(rng, len(sites))
    numbers, positions = [], []
    for k, m in enumerate(kinds):
        chosen = np.flatnonzero(kind_of_site == k)
        placed = np.einsum("sij,aj->sai", rotations[chosen], m.positions) + sites[chosen, None]
        positions.append(placed.reshape(-1, 3))
        numbers.append(np.tile(m.numbers, len(chosen)))
    atoms = Atoms(
        numbers=np.concatenate(numbers),
        positions=np.concatenate(positions),
        cell=np.diag(np.array(repeat) * a),
        pbc=True,
    )
    return atoms, "/".join(named), repeat
