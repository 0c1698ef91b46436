"""Benchmark systems of a requested size, made only of a model's own elements.

Built-in systems (``build_system``):

* ``dense-solid``: a diamond lattice of C (else Si, Ge, Sn) with the nearest-neighbour distance
  2 x covalent radius; a model without a group-14 element gets an fcc lattice of its heaviest
  element (nearest neighbours at 2 x covalent radius, at least 1 Å).
* ``molecular-liquid``: small molecules (see :mod:`macelerate.bench.molecules`) on an fcc lattice
  of sites with random orientations (:func:`~macelerate.bench.molecules.molecular_liquid`).
* ``oxide-slab``: graphene oxide (:func:`macelerate.data.structures.graphene_oxide`) when the
  model knows C and O, else a 4-layer rocksalt (001) slab of a cation and an anion element;
  15 Å of vacuum along z.

A system is a unit cell repeated to at least the requested number of atoms, as close to cubic
(in-plane square for slabs) as the counts allow; :func:`repeat_structure` does the same for a
user's structure. Built-in structures are rattled by 0.02 Å (seeded) so no symmetry is exact;
a user's structure is only repeated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import chemical_symbols, covalent_radii

from macelerate.bench.molecules import molecular_liquid
from macelerate.bench.repeat import choose_repeat
from macelerate.errors import StructureError

SYSTEMS = ("dense-solid", "molecular-liquid", "oxide-slab")
GROUP_14 = (6, 14, 32, 50)
ANIONS = (8, 7, 9, 16, 17, 34, 35, 52, 53)
"""O, N, F, S, Cl, Se, Br, Te, I: the elements an ``oxide-slab`` may use as its anion."""
MIN_BOND = 1.0
"""Å, shortest nearest-neighbour distance of a built lattice (H has a 0.31 Å covalent radius)."""
SLAB_VACUUM = 15.0
"""Å of vacuum between periodic images of a slab along z."""
RATTLE = 0.02
"""Å, standard deviation of the seeded noise added to every built structure."""


@dataclass(frozen=True)
class BuiltSystem:
    """A benchmark structure and how it was made.

    Attributes:
        atoms: the structure (a new object, owned by the caller).
        label: e.g. ``"dense-solid(C, diamond 5x5x5)"``: name, elements, unit and repetition.
        repeat: repetitions of the unit along the three cell vectors.
    """

    atoms: Atoms
    label: str
    repeat: tuple[int, int, int]


def _tile(unit: Atoms, n_atoms: int, axes: Sequence[bool]) -> tuple[Atoms, tuple[int, int, int]]:
    repeat = choose_repeat(unit.cell.lengths(), len(unit), n_atoms, axes=axes)
    return unit.repeat(repeat), repeat


def _times(repeat: tuple[int, int, int]) -> str:
    return "x".join(str(r) for r in repeat)


def _rattled(atoms: Atoms, seed: int) -> Atoms:
    atoms = atoms.copy()
    noise = np.random.default_rng(seed).normal(scale=RATTLE, size=atoms.positions.shape)
    atoms.positions = atoms.positions + noise
    return atoms


def dense_solid(atomic_numbers: Sequence[int], n_atoms: int, *, seed: int = 0) -> BuiltSystem:
    """A diamond (group 14) or fcc crystal of one of the model's elements, >= ``n_atoms``."""
    diamond = [z for z in GROUP_14 if z in atomic_numbers]
    if diamond:
        z, lattice = diamond[0], "diamond"
        bond = max(2 * covalent_radii[z], MIN_BOND)
        unit = bulk(chemical_symbols[z], "diamond", a=4 * bond / math.sqrt(3), cubic=True)
    else:
        z, lattice = max(atomic_numbers), "fcc"
        bond = max(2 * covalent_radii[z], MIN_BOND)
        unit = bulk(chemical_symbols[z], "fcc", a=bond * math.sqrt(2), cubic=True)
    atoms, repeat = _tile(unit, n_atoms, (True, True, True))
    label = f"dense-solid({chemical_symbols[z]}, {lattice} {_times(repeat)})"
    return BuiltSystem(_rattled(atoms, seed), label, repeat)


def oxide_slab(atomic_numbers: Sequence[int], n_atoms: int, *, seed: int = 0) -> BuiltSystem:
    """Graphene oxide (C and O) or a rocksalt (001) cation/anion slab, >= ``n_atoms``.

    Raises:
        StructureError: the model has no anion element or no second, non-hydrogen element.
    """
    if 6 in atomic_numbers and 8 in atomic_numbers:
        from macelerate.data.structures import graphene_oxide

        unit = graphene_oxide(repeat=(3, 2), oxygen_fraction=0.2, seed=seed)
        atoms, repeat = _tile(unit, n_atoms, (True, True, False))
        label = f"oxide-slab(C/O, graphene oxide {_times(repeat)})"
        return BuiltSystem(_rattled(atoms, seed), label, repeat)
    anions = [z for z in ANIONS if z in atomic_numbers]
    cations = [z for z in sorted(atomic_numbers, reverse=True) if z != 1 and z not in anions[:1]]
    if not anions or not cations:
        names = [chemical_symbols[z] for z in atomic_numbers]
        raise StructureError(
            f"oxide-slab needs an anion element ({', '.join(chemical_symbols[z] for z in ANIONS)}) "
            f"and a second non-hydrogen element, but the model knows only {names}; "
            "use --system dense-solid or --structure FILE"
        )
    cation, anion = cations[0], anions[0]
    a = 2 * (covalent_radii[cation] + covalent_radii[anion])
    formula = chemical_symbols[cation] + chemical_symbols[anion]
    unit = bulk(formula, "rocksalt", a=a, cubic=True).repeat((1, 1, 2))  # 4 atomic layers
    unit.center(vacuum=SLAB_VACUUM / 2, axis=2)
    atoms, repeat = _tile(unit, n_atoms, (True, True, False))
    label = f"oxide-slab({chemical_symbols[cation]}/{chemical_symbols[anion]}, "
    label += f"rocksalt(001) {_times(repeat)})"
    return BuiltSystem(_rattled(atoms, seed), label, repeat)


def build_system(
    name: str, atomic_numbers: Sequence[int], n_atoms: int, *, seed: int = 0
) -> BuiltSystem:
    """The built-in system ``name`` for a model with ``atomic_numbers``, of >= ``n_atoms`` atoms.

    Args:
        name: one of :data:`SYSTEMS`.
        atomic_numbers: the model's elements (``Potential.atomic_numbers``).
        n_atoms: atoms wanted (at least; the unit's size can make it up to about twice that).
        seed: seed of the random parts (rattle, molecule orientations, epoxide sites).

    Raises:
        StructureError: unknown name, non-positive size, or elements that cannot make the system.
    """
    if n_atoms < 1:
        raise StructureError(f"the number of atoms must be positive, got {n_atoms}")
    numbers = sorted({int(z) for z in atomic_numbers})
    if name == "dense-solid":
        return dense_solid(numbers, n_atoms, seed=seed)
    if name == "oxide-slab":
        return oxide_slab(numbers, n_atoms, seed=seed)
    if name == "molecular-liquid":
        atoms, names, repeat = molecular_liquid(numbers, n_atoms, seed=seed)
        return BuiltSystem(atoms, f"molecular-liquid({names}, fcc sites {_times(repeat)})", repeat)
    raise StructureError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")


def repeat_structure(atoms: Atoms, n_atoms: int, *, name: str, gap: float = 3.0) -> BuiltSystem:
    """``atoms`` repeated to at least ``n_atoms`` atoms along its periodic directions.

    A fully non-periodic structure (a molecule) is put in a box ``gap`` Å wider than it and
    repeated along all three axes; it stays non-periodic. The input is never changed.

    Args:
        atoms: the structure (its first frame, say).
        n_atoms: atoms wanted (at least).
        name: how to name it, e.g. ``"file:water.xyz"``.
        gap: Å between copies of a non-periodic structure.

    Raises:
        StructureError: a periodic direction with a zero-length cell vector.
    """
    atoms = atoms.copy()
    atoms.calc = None
    axes = [bool(p) for p in atoms.pbc]
    if not any(axes):
        extent = atoms.positions.max(axis=0) - atoms.positions.min(axis=0)
        atoms.set_cell(np.diag(extent + gap))
        atoms.center()
        axes = [True, True, True]
    lengths = atoms.cell.lengths()
    if any(axes[i] and lengths[i] < 1e-6 for i in range(3)):
        raise StructureError(f"{name}: a periodic direction has a zero-length cell vector")
    repeated, repeat = _tile(atoms, n_atoms, axes)
    return BuiltSystem(repeated, f"{name}({_times(repeat)})", repeat)
