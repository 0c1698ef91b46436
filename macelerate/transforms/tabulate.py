"""``tabulate_radial(potential) -> (new potential, TabulationReport)``: an approximate lever.

Every interaction's radial MLP becomes a cubic Hermite table of the edge length
(:mod:`macelerate.runtime.tabulated_radial`). The knot spacing is chosen from measured errors:
the table is refined until the interpolated hidden features agree with the MLP's at every interval
midpoint to ``hidden_tolerance`` (relative to their largest value) and, given probe structures,
until forces differ from the source potential's by at most ``max_force_error`` eV/Å. The report
gives both measurements. Forces stay the exact gradient of the (tabulated) energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms

from macelerate._mace import model_construction
from macelerate.mace.contract import RADIAL_EMBEDDING_CLASS
from macelerate.records import TransformRecord
from macelerate.runtime.tabulated_radial import (
    EdgeFeatures,
    LengthRadialEmbedding,
    TabulatedRadialMLP,
)

if TYPE_CHECKING:
    from macelerate.models.potential import Potential

FIRST_KNOTS = 256
MAX_KNOTS = 32768


class TabulationError(ValueError):
    """The model cannot be tabulated, or not to the requested accuracy."""


@dataclass(frozen=True)
class TabulationReport:
    """What :func:`tabulate_radial` built and what it costs in accuracy.

    Attributes:
        n_knots: knots per table (uniform grid on [r_min, r_max]).
        r_min: Å, first knot; shorter edges use the exact MLP.
        r_max: Å, last knot (the model cutoff).
        spacing: Å between knots.
        interactions: radial MLPs replaced.
        hidden_error: largest interpolation error of the hidden features at interval midpoints,
            relative to their largest magnitude.
        probe_structures: structures the force error was measured on (0: not measured).
        max_force_error: eV/Å, largest force-component difference from the source potential.
        rms_force_error: eV/Å, RMS of those differences.
        max_energy_error: eV/atom, largest energy difference per atom.
    """

    n_knots: int
    r_min: float
    r_max: float
    spacing: float
    interactions: int
    hidden_error: float
    probe_structures: int = 0
    max_force_error: float | None = None
    rms_force_error: float | None = None
    max_energy_error: float | None = None


def _innermost_embedding(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """(module holding the plain radial embedding, attribute name) of a mace backbone.

    A smooth neighbour cap wraps the embedding (``radial_embedding.inner``); the plain one is
    replaced, so the cap keeps multiplying the tabulated weights.
    """
    parent, name = model, "radial_embedding"
    embedding = getattr(model, name, None)
    if embedding is None:
        raise TabulationError(f"{type(model).__name__} has no radial embedding to tabulate")
    while isinstance(getattr(embedding, "inner", None), torch.nn.Module):
        parent, name, embedding = embedding, "inner", embedding.inner
    if type(embedding).__name__ != RADIAL_EMBEDDING_CLASS:
        raise TabulationError(
            f"radial embedding {type(embedding).__name__} is not mace-torch's "
            "RadialEmbeddingBlock (already tabulated, or under a precision policy: tabulate first)"
        )
    return parent, name


def tabulated_model(
    model: torch.nn.Module, *, n_knots: int, r_min: float
) -> tuple[torch.nn.Module, list[TabulatedRadialMLP]]:
    """A copy of a backbone-holding ``model`` with every radial MLP tabulated (``n_knots`` on
    [``r_min``, r_max]) and the length embedding that feeds them: the lever's model, which the
    metatomic export also starts from."""
    with model_construction():
        import copy

        model = copy.deepcopy(model)
    backbone: Any = getattr(model, "backbone", model)
    parent, name = _innermost_embedding(backbone)
    inner = getattr(parent, name)
    try:
        features = EdgeFeatures(inner)
    except ValueError as error:
        raise TabulationError(str(error)) from error
    r_max = float(backbone.r_max)
    tables = []
    for block in backbone.interactions:
        try:
            table = TabulatedRadialMLP(
                block.conv_tp_weights, features, r_min=r_min, r_max=r_max, n_knots=n_knots
            )
        except (ValueError, AttributeError) as error:
            raise TabulationError(f"cannot tabulate {type(block).__name__}: {error}") from error
        block.conv_tp_weights = table
        tables.append(table)
    setattr(parent, name, LengthRadialEmbedding(inner))
    return model, tables


def _hidden_error(tables: list[TabulatedRadialMLP]) -> float:
    """Largest relative interpolation error of the hidden features at interval midpoints."""
    worst = 0.0
    for table in tables:
        knots = torch.linspace(table.r_min, table.r_max, table.n_knots, dtype=torch.float64)
        midpoints = (0.5 * (knots[1:] + knots[:-1])).unsqueeze(-1)
        with torch.no_grad():
            exact = table.exact_hidden(table.embedding(midpoints.to(table.last_weight.dtype)))
            approx = table.hidden(midpoints.to(table.last_weight.dtype))
        scale = float(exact.abs().max()) or 1.0
        worst = max(worst, float((approx - exact).abs().max()) / scale)
    return worst


def force_errors(
    reference: Potential, candidate: Potential, probe: Sequence[Atoms]
) -> tuple[float, float, float]:
    """(max |ΔF| eV/Å, RMS ΔF eV/Å, max |ΔE|/atom eV) of ``candidate`` against ``reference``."""
    forces, energies = [], []
    for atoms in probe:
        a = reference.predict(atoms, compute_stress=False)
        b = candidate.predict(atoms, compute_stress=False)
        forces.append((b.forces - a.forces).ravel())
        energies.append(abs(float(b.energy[0] - a.energy[0])) / len(atoms))
    delta = np.concatenate(forces)
    return float(np.abs(delta).max()), float(np.sqrt(np.mean(delta**2))), max(energies)


def tabulate_radial(
    potential: Potential,
    *,
    probe: Sequence[Atoms] | None = None,
    max_force_error: float = 1e-3,
    hidden_tolerance: float = 1e-6,
    knots: int | None = None,
    r_min: float = 0.5,
) -> tuple[Potential, TabulationReport]:
    """A new Potential whose radial MLPs are cubic tables of the edge length.

    Args:
        potential: the source (unchanged); tabulate before applying a precision policy.
        probe: structures on which the force error against ``potential`` is measured (and kept
            at or below ``max_force_error``); ``None`` measures only the radial functions.
        max_force_error: eV/Å, the largest force-component error allowed on ``probe``.
        hidden_tolerance: largest relative interpolation error of the hidden features allowed.
        knots: a fixed number of knots instead of the search.
        r_min: Å, first knot (shorter edges use the exact MLP).

    Raises:
        TabulationError: a radial embedding that depends on more than the length, a radial
            network that is not an e3nn MLP, or a tolerance not reached with 32768 knots.
    """
    if potential.precision is not None:
        raise TabulationError("tabulate before applying a precision policy")
    n_knots = knots or FIRST_KNOTS
    while True:
        model, tables = tabulated_model(potential.model, n_knots=n_knots, r_min=r_min)
        hidden_error = _hidden_error(tables)
        candidate = potential.replace(
            model, record=TransformRecord("tabulate_radial", False, {"knots": n_knots})
        )
        measured = force_errors(potential, candidate, probe) if probe else None
        good = hidden_error <= hidden_tolerance and (
            measured is None or measured[0] <= max_force_error
        )
        if knots is not None or good:
            break
        if n_knots >= MAX_KNOTS:
            raise TabulationError(
                f"{MAX_KNOTS} knots still give a hidden-feature error of {hidden_error:.2e}"
                + (f" and a force error of {measured[0]:.2e} eV/Å" if measured else "")
                + ": raise the tolerances or keep the exact radial MLPs"
            )
        n_knots *= 2
    report = TabulationReport(
        n_knots=n_knots,
        r_min=r_min,
        r_max=tables[0].r_max,
        spacing=tables[0].spacing,
        interactions=len(tables),
        hidden_error=hidden_error,
        probe_structures=len(probe) if probe else 0,
        max_force_error=measured[0] if measured else None,
        rms_force_error=measured[1] if measured else None,
        max_energy_error=measured[2] if measured else None,
    )
    options = {"knots": knots, "r_min": r_min, "max_force_error": max_force_error,
               "hidden_tolerance": hidden_tolerance}  # fmt: skip
    record = TransformRecord("tabulate_radial", False, options, asdict(report))
    return potential.replace(model, record=record), report
