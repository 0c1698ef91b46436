"""What an export wrote and how closely the written file reproduces the model: ``ExportReport``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from macelerate.errors import MacelerateError

FORMATS = ("mace", "metatomic", "symmetrix")
"""File formats :func:`macelerate.export.export_model` writes."""


class ExportError(MacelerateError, ValueError):
    """A model that cannot be written in the requested format (the message says why and the fix),
    a missing optional package, or a written file that does not reproduce the model."""


@dataclass(frozen=True)
class Agreement:
    """Largest differences between the written file, run by its engine, and macelerate.

    Attributes:
        max_abs_energy_diff: max |ΔE| in eV over the probe structures.
        max_abs_force_diff: max |ΔF| component in eV/Å over the probe structures.
        max_abs_stress_diff: max |Δσ| component in eV/Å³ over the periodic probes (None when
            the engine was not asked for stress).
        structures: names of the probe structures.
    """

    max_abs_energy_diff: float
    max_abs_force_diff: float
    max_abs_stress_diff: float | None
    structures: tuple[str, ...]


@dataclass(frozen=True)
class ExportReport:
    """One written export.

    Attributes:
        path: the file written.
        format: one of :data:`FORMATS`.
        dtype: ``"float64"`` or ``"float32"``, the precision of the written model.
        changes: how the written model differs from the source (parts left out, caps dropped);
            empty when it is the same model.
        agreement: the written file, loaded back by its engine, against macelerate on the same
            model.
        engine: what ran the written file for ``agreement`` (e.g. ``"metatomic-ase"``).
    """

    path: Path
    format: str
    dtype: str
    changes: tuple[str, ...]
    agreement: Agreement
    engine: str

    def summary(self) -> str:
        """One line: what was written and the verification numbers."""
        a = self.agreement
        text = (
            f"wrote {self.path} ({self.format}, {self.dtype}); {self.engine} vs macelerate on "
            f"{len(a.structures)} structures: max |ΔE| {a.max_abs_energy_diff:.1e} eV, "
            f"max |ΔF| {a.max_abs_force_diff:.1e} eV/Å"
        )
        if self.changes:
            text += "; changes: " + "; ".join(self.changes)
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "path": str(self.path),
            "format": self.format,
            "dtype": self.dtype,
            "changes": list(self.changes),
            "agreement": {**asdict(self.agreement), "structures": list(self.agreement.structures)},
            "engine": self.engine,
        }
