"""Write macelerate's models for other engines, each export checked before it is moved into place.

Public names (imported on first use)::

    from macelerate.export import export_model
    report = export_model("student.pt", "student.model", format="mace")
    print(report.summary())

Formats: ``mace`` (a mace-torch ``.model`` pickle: ``MACECalculator``, LAMMPS tools),
``metatomic`` (an ``AtomisticModel`` for metatomic engines; needs ``metatomic-torch`` and
``metatomic-ase``) and ``symmetrix`` (Symmetrix-XL's JSON; needs ``symmetrix-xl``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.export.formats import export_model
    from macelerate.export.mace_file import export_mace
    from macelerate.export.metatomic import export_metatomic
    from macelerate.export.report import FORMATS, Agreement, ExportError, ExportReport
    from macelerate.export.symmetrix import export_symmetrix

_EXPORTS = {
    "export_model": "macelerate.export.formats",
    "export_mace": "macelerate.export.mace_file",
    "export_metatomic": "macelerate.export.metatomic",
    "export_symmetrix": "macelerate.export.symmetrix",
    "FORMATS": "macelerate.export.report",
    "Agreement": "macelerate.export.report",
    "ExportError": "macelerate.export.report",
    "ExportReport": "macelerate.export.report",
}

__all__ = [
    "FORMATS",
    "Agreement",
    "ExportError",
    "ExportReport",
    "export_mace",
    "export_metatomic",
    "export_model",
    "export_symmetrix",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
