"""``load``: any mace-torch model file, macelerate checkpoint or module -> :class:`Potential`."""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from macelerate._dtypes import parse_dtype as dtype_by_name
from macelerate._mace import model_construction
from macelerate.errors import ModelFileError
from macelerate.graph.validation import DEFAULT_MIN_DISTANCE
from macelerate.mace.config import rebuild_mace_model
from macelerate.models.checkpoint import is_checkpoint, upgrade_checkpoint
from macelerate.models.mace_pickle import (
    is_torchscript_archive,
    load_mace_pickle,
    load_torchscript,
)
from macelerate.models.potential import ModelSource, Potential
from macelerate.precision.apply import check_device_supports, strip_islands
from macelerate.precision.islands import PrecisionIsland
from macelerate.precision.policy import PrecisionPolicy, resolve_policy
from macelerate.runtime.accelerate import RuntimeOptions

RADIAL_MODES = ("exact", "tabulated")
READOUT_MODES = ("exact", "int8")


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"float64"``/``"float32"``/``torch`` dtype/``None`` (keep the model's) -> torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return dtype_by_name(dtype)
    except ValueError as error:
        raise ValueError(f"{error} or None") from None


def _check_is_model_archive(path: Path) -> None:
    """Refuse paths that are not a zip archive, with what they are instead."""
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a directory, not a model file; pass the .model or checkpoint file inside it"
        )
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if not path.is_file():
        raise ModelFileError(f"{path} is not a regular file; pass a .model or checkpoint file")
    if zipfile.is_zipfile(path):
        _check_checksums(path)
        return
    with open(path, "rb") as handle:
        starts_like_zip = handle.read(4) == b"PK\x03\x04"
    if starts_like_zip:
        raise ModelFileError(
            f"{path} is a truncated or damaged model archive; copy or download it again"
        )
    raise ModelFileError(
        f"{path} is not a model file (not a torch zip archive); expected a mace-torch .model "
        "file or a macelerate checkpoint"
    )


def _check_checksums(path: Path) -> None:
    """Refuse archives whose records fail their CRC-32 (torch itself does not check them)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ModelFileError(
            f"{path} is a truncated or damaged model archive ({error}); copy or download it again"
        ) from error
    if bad is not None:
        raise ModelFileError(
            f"{path} is a damaged model archive: record {bad} fails its checksum; copy or "
            "download it again"
        )


def _model_from_checkpoint(payload: dict[str, Any], *, source: str) -> torch.nn.Module:
    """Rebuild the model of an upgraded (weights-only loaded) macelerate checkpoint dictionary."""
    from macelerate.models.student import MODEL_CLASS as STUDENT_CLASS

    if payload["model_config"].get("model_class") == STUDENT_CLASS:
        from macelerate.models.student import student_from_checkpoint

        return student_from_checkpoint(payload, source=source)
    return rebuild_mace_model(payload["model_config"], payload["state_dict"], source=source)


def read_model_file(
    path: str | Path, *, allow_pickle: bool = True
) -> tuple[torch.nn.Module, ModelSource]:
    """Read a model from disk without converting it.

    A macelerate checkpoint is read with ``weights_only=True`` and rebuilt from its config. A
    mace-torch ``.model`` pickle goes through
    :func:`~macelerate.models.mace_pickle.load_mace_pickle` (an allow-listed unpickling, then a
    rebuild: no code from the file runs); a TorchScript export through ``torch.jit.load`` (its
    TorchScript runs). Both need ``allow_pickle``. Weights holding NaN or inf are refused.

    Raises:
        ModelFileError: missing, damaged, foreign, edited or non-finite files, directories, and
            (with ``allow_pickle=False``) pickles and TorchScript exports.
    """
    path = Path(path)
    _check_is_model_archive(path)
    if is_torchscript_archive(path):
        if not allow_pickle:
            raise ModelFileError(
                f"{path} is a TorchScript export (it runs its own TorchScript code) and "
                "allow_pickle=False; load it with allow_pickle=True if you trust it"
            )
        return load_torchscript(path), ModelSource(kind="torchscript", path=str(path))
    try:
        with warnings.catch_warnings():  # torch notes protocol-4 pickles before refusing them
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
            payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        payload = None  # a pickle with code references: a whole mace-torch module
    except Exception as error:
        raise ModelFileError(
            f"{path} is a damaged torch archive ({type(error).__name__}: {error}); copy or "
            "download it again"
        ) from error
    if payload is None:
        if not allow_pickle:
            raise ModelFileError(
                f"{path} is a pickled mace-torch model and allow_pickle=False; convert it once "
                "with 'macelerate convert' into a weights-only checkpoint"
            )
        return load_mace_pickle(path), ModelSource(kind="mace-pickle", path=str(path))
    if not is_checkpoint(payload):
        keys = list(payload)[:5] if isinstance(payload, dict) else type(payload).__name__
        raise ModelFileError(
            f"{path} holds no model (found {keys}); expected a mace-torch .model file or a "
            "macelerate checkpoint (see 'macelerate convert')"
        )
    payload = upgrade_checkpoint(payload, source=str(path))
    model = _model_from_checkpoint(payload, source=str(path))
    source = ModelSource(
        kind="checkpoint",
        path=str(path),
        provenance=dict(payload["provenance"]),
        transforms_applied=tuple(payload.get("transforms_applied", [])),
    )
    return model, source


def load(
    path_or_module: str | Path | torch.nn.Module | Potential,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = "float64",
    head: str | None = None,
    allow_pickle: bool = True,
    min_distance: float | None = DEFAULT_MIN_DISTANCE,
    tune_allocator: bool = True,
    fuse_message_passing: bool | RuntimeOptions = True,
    radial: str = "exact",
    readouts: str = "exact",
    precision: str | PrecisionPolicy | dict[str, Any] | None = None,
    **unknown: Any,
) -> Potential:
    """Load a mace-torch model for fast evaluation: read, copy, then the runtime transforms.

    ``load`` composes the explicit transforms of :mod:`macelerate.transforms`, in this order:
    :func:`~macelerate.transforms.fuse` (exact kernels), then
    :func:`~macelerate.transforms.tabulate_radial` (if ``radial="tabulated"``), then
    :func:`~macelerate.transforms.quantize_readouts` (if ``readouts="int8"``), then
    :func:`~macelerate.transforms.apply_precision` (if ``precision`` is given). Each is recorded
    in ``potential.transforms``; call them yourself to get their reports.

    Args:
        path_or_module: a mace-torch ``.model`` file, a macelerate checkpoint, a TorchScript export,
            an ``nn.Module`` (copied, never changed) or a :class:`Potential` (its model re-wrapped).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"float64"`` (default, for exactness), ``"float32"``, or ``None`` to keep the
            model's own precision.
        head: readout head of a multi-head model.
        allow_pickle: allow mace-torch ``.model`` pickles (read without running code from them,
            see :mod:`macelerate.models.mace_pickle`) and TorchScript exports (whose TorchScript
            runs). ``False`` accepts only weights-only macelerate checkpoints.
        min_distance: Å below which structures are rejected as overlapping (``None`` disables).
        tune_allocator: a process-wide choice, made once: on Linux/glibc keep large tensors on
            the malloc heap (see :mod:`macelerate.runtime.allocator`), which removes most of the
            page-fault time a CPU step spends. ``False`` leaves the allocator alone.
        fuse_message_passing: apply :func:`~macelerate.transforms.fuse` (fused convolution,
            table-based symmetric contraction, dead-block skipping; results equal mace-torch's
            to floating-point rounding), or a
            :class:`~macelerate.runtime.accelerate.RuntimeOptions` choosing among them.
            ``False`` runs mace-torch's modules unchanged.
        radial: ``"exact"`` (default) or ``"tabulated"``: radial MLPs as cubic tables of the
            edge length (an approximate lever; see :func:`~macelerate.transforms.tabulate_radial`
            for the measured error).
        readouts: ``"exact"`` (default) or ``"int8"``: readout linears with int8 weights (an
            approximate lever; see :func:`~macelerate.transforms.quantize_readouts`).
        precision: a precision policy (:class:`~macelerate.precision.PrecisionPolicy`, a preset
            name such as ``"fp32"``, ``"bf16-linear"``, ``"bf16-mixed"``, or a dict of fields):
            per-block storage and compute dtypes instead of one ``dtype``. With a policy,
            ``dtype`` must be left at its default (or ``None``).

    Returns:
        A :class:`Potential`.
    """
    from macelerate.transforms import quantize_readouts, tabulate_radial
    from macelerate.transforms.fuse import fuse_owned
    from macelerate.transforms.precision import apply_precision_owned

    if unknown:
        raise TypeError(f"load() got unknown options {sorted(unknown)}")
    if radial not in RADIAL_MODES:
        raise ValueError(f"radial must be one of {RADIAL_MODES}, got {radial!r}")
    if readouts not in READOUT_MODES:
        raise ValueError(f"readouts must be one of {READOUT_MODES}, got {readouts!r}")
    torch_dtype = parse_dtype(dtype)
    policy = None
    if precision is not None:
        if torch_dtype not in (None, torch.float64):
            raise ValueError(
                f"pass either dtype={dtype!r} or precision={precision!r}, not both; a policy "
                "sets every block's dtype (e.g. precision='fp32')"
            )
        policy = resolve_policy(precision)
        check_device_supports(policy, device)
        torch_dtype = None
    if tune_allocator:
        from macelerate.runtime.allocator import tune_malloc_for_tensors

        tune_malloc_for_tensors()
    if isinstance(path_or_module, Potential):
        module, source = path_or_module.model, path_or_module.source
    elif isinstance(path_or_module, torch.nn.Module):
        module, source = path_or_module, ModelSource(kind="module")
    else:
        module, source = read_model_file(path_or_module, allow_pickle=allow_pickle)
    potential = Potential.from_module(
        module, device=device, dtype=torch_dtype, head=head, min_distance=min_distance,
        source=source,
    )  # fmt: skip
    if any(isinstance(m, PrecisionIsland) for m in potential.model.modules()):
        with model_construction():  # a re-wrapped Potential that ran a policy: back to float64
            strip_islands(potential.model, dtype=torch_dtype or torch.float64)
    scripted = isinstance(potential.model, torch.jit.ScriptModule)
    if fuse_message_passing is not False and not scripted:
        options = fuse_message_passing if isinstance(fuse_message_passing, RuntimeOptions) else None
        potential, _ = fuse_owned(potential, options)
    if radial == "tabulated":
        potential, _ = tabulate_radial(potential)
    if readouts == "int8":
        potential, _ = quantize_readouts(potential)
    if policy is not None:
        potential, _ = apply_precision_owned(potential, policy)
    return potential
