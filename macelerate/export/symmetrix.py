"""``export_symmetrix``: write the JSON model Symmetrix-XL (a C++ MACE engine) runs.

The model is first written as a plain mace-torch file
(:func:`~macelerate.export.mace_file.plain_mace_module`, so students are exported or refused as
for ``mace``), then converted by Symmetrix-XL's ``symmetrix_extract_mace`` exactly as
``macelerate bench --reference symmetrix`` does (:func:`macelerate.bench.peers.symmetrix_model`:
the conversion is cached under ``$MACELERATE_CACHE``). The converter supports fewer models than
mace-torch (``l_max`` 3 only, ``correlation`` 3, no GST models, ...); its refusal is passed on.
Symmetrix evaluates radial functions from splines, so its check allows
:data:`SYMMETRIX_FORCE_TOLERANCE` rather than the exact formats' 1e-6 eV/Å.
Needs ``pip install 'macelerate[peers]'``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from macelerate._mace import model_construction
from macelerate.atomic_io import write_atomically
from macelerate.export.mace_file import check_dtype, plain_mace_module, write_mace_file
from macelerate.export.report import Agreement, ExportError, ExportReport
from macelerate.export.source import read_source
from macelerate.export.verify import check_agreement, compare, probe_structures

SYMMETRIX_FORCE_TOLERANCE = 5e-3
"""eV/Å allowed between Symmetrix and macelerate in either dtype: Symmetrix evaluates radial
functions from splines and compiles with fast math (0.06 meV/Å on GO-MACE's probes here, 0.9 meV/Å
on larger GO structures in the README); a faulty conversion is off by far more."""


def export_symmetrix(
    model: str | Path | torch.nn.Module,
    out: str | Path,
    *,
    dtype: str = "float64",
    allow_uncapped: bool = False,
    timeout_s: float = 1800.0,
) -> ExportReport:
    """Write ``model`` as a Symmetrix-XL JSON model, checked with Symmetrix's ASE calculator.

    Args:
        model: a model file, mace-torch module, student or Potential (see :func:`read_source`).
        out: the ``.json`` file to write (atomically).
        dtype: the precision Symmetrix is checked in (the JSON itself serves both).
        allow_uncapped: export a hard-capped student without its cap.
        timeout_s: longest the converter may run.

    Raises:
        ExportError: Symmetrix-XL is not installed, the model cannot be a plain mace-torch model,
            the converter refused it (its message included), or the result disagrees with
            macelerate.
    """
    from macelerate.bench.peers import PeerEngineError, symmetrix_model, symmetrix_version

    check_dtype(dtype)
    # what the model cannot be comes first: installing Symmetrix would not help with it
    mace, changes = plain_mace_module(read_source(model), allow_uncapped=allow_uncapped)
    try:
        version = symmetrix_version()
    except PeerEngineError as error:
        raise ExportError(f"symmetrix export: {error}") from error
    with model_construction():
        mace = mace.to(device="cpu", dtype=torch.float64).eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as folder:
        mace_file = Path(folder) / f"{out.stem}.model"
        write_mace_file(mace, mace_file)
        try:
            converted = symmetrix_model(mace_file, timeout_s=timeout_s)
        except PeerEngineError as error:  # name the user's model, not the temporary copy
            name = str(model) if isinstance(model, (str, Path)) else "the model"
            raise ExportError(f"symmetrix export: {error}".replace(str(mace_file), name)) from error
    agreement = _copy_checked(converted, mace, out, dtype=dtype)
    return ExportReport(out, "symmetrix", dtype, changes, agreement, f"symmetrix-xl {version}")


def _copy_checked(converted: Path, mace: torch.nn.Module, out: Path, *, dtype: str) -> Agreement:
    from symmetrix import Symmetrix

    from macelerate._torch_state import keep_subnormals
    from macelerate.calculator import Calculator

    described: Any = mace
    structures = probe_structures([int(z) for z in described.atomic_numbers])
    reference = Calculator(mace, dtype=dtype, min_distance=None)
    found: list[Agreement] = []

    def write(tmp: Path) -> None:
        shutil.copyfile(converted, tmp)
        with keep_subnormals():  # Symmetrix turns on flush-to-zero for the whole process
            agreement = compare(reference, Symmetrix(str(tmp), dtype=dtype), structures)
        check_agreement(
            agreement, dtype=dtype, n_atoms=len(structures[0][1]), what="Symmetrix model",
            tolerance=SYMMETRIX_FORCE_TOLERANCE,
        )  # fmt: skip
        found.append(agreement)

    write_atomically(out, write)
    return found[0]
