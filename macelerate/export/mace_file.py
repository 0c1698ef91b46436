"""``export_mace``: write a plain mace-torch ``.model`` file (what ``MACECalculator`` and LAMMPS
tools load: ``torch.save`` of the mace-torch module).

mace-torch models and pruned models are written as they are; conservative students as their
backbone (:func:`macelerate.models.student.export_backbone`). Parts a mace-torch model cannot hold
(direct force / stress heads, a smooth neighbour cap) are refused, each by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from macelerate._dtypes import MODEL_DTYPES, parse_dtype
from macelerate._mace import model_construction
from macelerate.atomic_io import write_atomically
from macelerate.export.report import Agreement, ExportError, ExportReport
from macelerate.export.source import read_source
from macelerate.export.verify import check_agreement, compare, probe_structures


def check_dtype(dtype: str) -> torch.dtype:
    """``"float64"``/``"float32"`` -> torch dtype, or an :class:`ExportError`."""
    try:
        return parse_dtype(dtype)
    except ValueError as error:
        raise ExportError(f"export dtype must be one of {list(MODEL_DTYPES)}, not {dtype!r}") from (
            error
        )


def plain_mace_module(
    module: torch.nn.Module, *, allow_uncapped: bool = False, keep_smooth_cap: bool = False
) -> tuple[torch.nn.Module, tuple[str, ...]]:
    """The mace-torch model behind ``module`` (from :func:`read_source`) and how it differs.

    Args:
        module: a mace-torch model (returned as is) or a student.
        allow_uncapped: export a hard-capped student without its cap (results then differ
            wherever an atom has more neighbours than the cap).
        keep_smooth_cap: keep a smooth cap inside the model (see
            :func:`~macelerate.models.student.export_backbone`; metatomic only).

    Returns:
        ``(mace-torch model, changes)``; ``changes`` names what the student had that the model
        does not (a confidence head, a neighbour cap).

    Raises:
        ExportError: a student with direct heads or a smooth cap, or a hard cap without
            ``allow_uncapped``.
    """
    from macelerate.models.student import Student, StudentError, export_backbone

    if not isinstance(module, Student):
        return module, ()
    try:
        backbone = export_backbone(
            module, allow_uncapped=allow_uncapped, keep_smooth_cap=keep_smooth_cap
        )
    except StudentError as error:
        raise ExportError(str(error)) from error
    changes = []
    if module.confidence is not None:
        changes.append("confidence head left out (it changes no energy or force)")
    if module.config.smooth_cap:
        changes.append(smooth_cap_change(module.config))
    elif module.config.max_neighbors is not None:
        changes.append(
            f"neighbour cap of {module.config.max_neighbors} dropped: results differ where an "
            "atom has more neighbours"
        )
    return backbone, tuple(changes)


def smooth_cap_change(config: Any) -> str:
    """The report line of a smooth cap kept inside an exported model (a ``StudentConfig``)."""
    return (
        f"smooth neighbour cap of {config.max_neighbors} (width {config.cap_width} Å) kept inside "
        f"the model: neighbour list to r_max + 2 × width = {config.r_max + 2 * config.cap_width} "
        "Å, thresholds searched in TorchScript"
    )


def export_mace(
    model: str | Path | torch.nn.Module,
    out: str | Path,
    *,
    dtype: str = "float64",
    allow_uncapped: bool = False,
) -> ExportReport:
    """Write ``model`` as a mace-torch ``.model`` pickle, checked before it is moved into place.

    The file is read back through macelerate's allow-listed loader and run against the model it
    holds on :func:`~macelerate.export.verify.probe_structures`.

    Args:
        model: a model file, mace-torch module, student or Potential (see :func:`read_source`).
        out: the ``.model`` file to write (atomically).
        dtype: ``"float64"`` or ``"float32"``: the precision the written model holds.
        allow_uncapped: see :func:`plain_mace_module`.

    Raises:
        ExportError: the model cannot be a plain mace-torch model (the reason named), or the file
            read back disagrees with it.
    """
    torch_dtype = check_dtype(dtype)
    module, changes = plain_mace_module(read_source(model), allow_uncapped=allow_uncapped)
    with model_construction():
        module = module.to(device="cpu", dtype=torch_dtype).eval()
    agreement = _write_checked(module, Path(out), dtype=dtype)
    return ExportReport(Path(out), "mace", dtype, changes, agreement, "macelerate (file read back)")


def write_mace_file(module: torch.nn.Module, path: Path) -> None:
    """``torch.save`` of the whole module: the layout mace-torch's own ``.model`` files have."""
    torch.save(module, path)


def _write_checked(module: torch.nn.Module, out: Path, *, dtype: str) -> Agreement:
    from macelerate.calculator import Calculator
    from macelerate.models.loading import read_model_file

    mace: Any = module  # atomic_numbers: a buffer of mace-torch models
    structures = probe_structures([int(z) for z in mace.atomic_numbers])
    reference = Calculator(module, dtype=dtype, min_distance=None)
    found: list[Agreement] = []

    def write(tmp: Path) -> None:
        write_mace_file(module, tmp)
        written, _ = read_model_file(tmp)
        candidate = Calculator(written, dtype=dtype, min_distance=None)
        agreement = compare(reference, candidate, structures)
        check_agreement(agreement, dtype=dtype, n_atoms=len(structures[0][1]), what="mace file")
        found.append(agreement)

    write_atomically(out, write)
    return found[0]
