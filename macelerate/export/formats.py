"""``export_model``: one entry point for every export format (what ``macelerate export`` calls)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from macelerate.export.report import FORMATS, ExportError, ExportReport


def export_model(
    model: str | Path | torch.nn.Module,
    out: str | Path,
    *,
    format: str,
    dtype: str = "float64",
    allow_uncapped: bool = False,
    head: str | None = None,
    radial: str = "exact",
) -> ExportReport:
    """Write ``model`` in ``format``, verified before it is moved into place.

    Args:
        model: a model file (mace-torch ``.model`` pickles are read without running code from
            them), a mace-torch module, a student or a Potential.
        out: the file to write.
        format: ``"mace"`` (:func:`~macelerate.export.mace_file.export_mace`), ``"metatomic"``
            (:func:`~macelerate.export.metatomic.export_metatomic`) or ``"symmetrix"``
            (:func:`~macelerate.export.symmetrix.export_symmetrix`).
        dtype: ``"float64"`` or ``"float32"``.
        allow_uncapped: export a hard-capped student without its neighbour cap.
        head: readout head of a multi-head model (metatomic only; the other formats keep all).
        radial: ``"exact"`` or ``"tabulated"`` (metatomic only: the tabulated lever's cubic
            tables inside the written model).

    Raises:
        ExportError: an unknown format, or the reason the model cannot be written in it.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose one of {list(FORMATS)}")
    options: dict[str, Any] = {"dtype": dtype, "allow_uncapped": allow_uncapped}
    if head is not None and format != "metatomic":
        raise ExportError(f"--head applies to metatomic exports; a {format} file keeps every head")
    if radial != "exact" and format != "metatomic":
        raise ExportError(f"--radial {radial} applies to metatomic exports, not {format}")
    if format == "mace":
        from macelerate.export.mace_file import export_mace

        return export_mace(model, out, **options)
    if format == "metatomic":
        from macelerate.export.metatomic import export_metatomic

        return export_metatomic(model, out, head=head, radial=radial, **options)
    from macelerate.export.symmetrix import export_symmetrix

    return export_symmetrix(model, out, **options)
