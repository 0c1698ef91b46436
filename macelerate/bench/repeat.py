"""How many times to repeat a unit cell to reach a number of atoms, as near cubic as possible."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

MAX_ASPECT = 2.0
"""Largest ratio of the longest to the shortest repeated cell length :func:`choose_repeat` takes."""


def choose_repeat(
    lengths: Sequence[float], n_unit: int, n_atoms: int, *, axes: Sequence[bool] = (True,) * 3
) -> tuple[int, int, int]:
    """The fewest repetitions of a unit that reach ``n_atoms``, as near cubic as possible.

    Among repetitions whose repeated lengths differ by at most :data:`MAX_ASPECT` (if any has),
    takes the one with the smallest (total repetitions) x sqrt(longest / shortest length): a
    few more atoms buy a more isotropic cell (6x6x7 rather than 5x5x10 for 250 units).

    Args:
        lengths: [3] unit cell lengths in Å.
        n_unit: atoms in the unit.
        n_atoms: atoms wanted (at least).
        axes: [3] which cell vectors may be repeated.

    Returns:
        Repetitions along the three cell vectors (1 along the axes not allowed).
    """
    need = max(1, math.ceil(n_atoms / n_unit))
    free = [i for i in range(3) if axes[i]]
    if not free:
        return (1, 1, 1)
    best: tuple[tuple[bool, float, float], tuple[int, int, int]] | None = None
    for counts in _factor_candidates(need, len(free)):
        repeat = [1, 1, 1]
        for axis, count in zip(free, counts):
            repeat[axis] = count
        sizes = [lengths[i] * repeat[i] for i in free]
        aspect = max(sizes) / min(sizes)
        key = (aspect > MAX_ASPECT, math.prod(counts) * math.sqrt(aspect), aspect)
        if best is None or key < best[0]:
            best = (key, (repeat[0], repeat[1], repeat[2]))
    assert best is not None
    return best[1]


def _factor_candidates(need: int, n_axes: int) -> Iterator[tuple[int, ...]]:
    """Tuples of ``n_axes`` counts whose product first reaches ``need`` along the last axis.

    The free counts stay below 4 x the ``n_axes``-th root of ``need``: anything longer is far
    from cubic for any sensible unit, and the bound keeps the search small for large sizes.
    """
    if n_axes == 1:
        yield (need,)
        return
    cap = min(need, math.ceil(4 * need ** (1 / n_axes)))
    for a in range(1, cap + 1):
        if n_axes == 2:
            yield (a, math.ceil(need / a))
            continue
        for b in range(1, min(cap, math.ceil(need / a)) + 1):
            yield (a, b, math.ceil(need / (a * b)))
