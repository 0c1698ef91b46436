"""The compress run's last stage: the chosen student written for the engines people run MD in.

A metatomic model (LAMMPS ``pair_style metatomic``, i-PI, ASE, torch-sim through metatomic) in the
run's speed dtype, checked by metatomic-ase against macelerate before it is moved into place (see
:func:`macelerate.export.export_metatomic`). The students compress trains are conservative and
smooth-capped; the cap runs inside the exported model. When metatomic is not installed or the
export is refused, the outcome says why and the run goes on: the student file stays the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

METATOMIC_FILE = "student_metatomic.pt"


def export_student(student_path: Path, out: Path, *, dtype: str) -> dict[str, Any]:
    """Write ``out / METATOMIC_FILE`` from the student at ``student_path``.

    Args:
        student_path: the chosen student's file.
        out: the run's folder.
        dtype: ``"float32"`` or ``"float64"``: the precision engines will feed the model.

    Returns:
        Plain data: ``{"metatomic": {"file", "dtype", "max_abs_force_diff_eV_per_A", "changes",
        "engine"}}``, or ``{"metatomic": {"file": None, "skipped": reason}}``.
    """
    from macelerate.export import ExportError, export_metatomic

    target = out / METATOMIC_FILE
    try:
        report = export_metatomic(student_path, target, dtype=dtype)
    except ExportError as error:
        return {"metatomic": {"file": None, "skipped": str(error)}}
    return {
        "metatomic": {
            "file": target.name,
            "dtype": dtype,
            "max_abs_force_diff_eV_per_A": report.agreement.max_abs_force_diff,
            "changes": list(report.changes),
            "engine": report.engine,
        }
    }
