"""``load``: any mace-torch model file, macelerate checkpoint or module -> :class:`Potential`."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from macelerate.errors import ModelFileError
from macelerate.graph.validation import DEFAULT_MIN_DISTANCE
from macelerate.models.checkpoint import is_checkpoint, upgrade_checkpoint
from macelerate.models.config import rebuild_mace_model
from macelerate.models.mace_pickle import is_torchscript_archive, load_mace_pickle
from macelerate.models.potential import ModelSource, Potential
from macelerate.precision.apply import check_device_supports
from macelerate.precision.policy import PrecisionPolicy, resolve_policy

DTYPES = {"float64": torch.float64, "float32": torch.float32}
STUDENT_CLASS = "macelerate.Student"
"""``model_config["model_class"]`` of distilled students (a mace backbone plus heads)."""


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``"float64"``/``"float32"``/``torch`` dtype/``None`` (keep the model's) -> torch dtype."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)} or None, got {dtype!r}")
    return DTYPES[dtype]


def read_model_file(
    path: str | Path, *, allow_pickle: bool = True
) -> tuple[torch.nn.Module, ModelSource]:
    """Read a model from disk without converting it.

    A macelerate checkpoint is read with ``weights_only=True`` and rebuilt from its config. A
    mace-torch ``.model`` pickle goes through
    :func:`~macelerate.models.mace_pickle.load_mace_pickle` (only if ``allow_pickle``); a
    TorchScript export through ``torch.jit.load``.

    Raises:
        ModelFileError: missing, corrupted, foreign or (with ``allow_pickle=False``) pickled files.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path} is not a model file (not a torch zip archive); expected a mace-torch .model "
            "file or a macelerate checkpoint"
        )
    if is_torchscript_archive(path):
        return load_mace_pickle(path), ModelSource(kind="torchscript", path=str(path))
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        payload = None  # a pickle with code references: a whole mace-torch module
    except Exception as error:
        raise ModelFileError(f"{path} is a damaged torch archive ({error})") from error
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
    if payload["model_config"].get("model_class") == STUDENT_CLASS:
        from macelerate.models.student import student_from_checkpoint

        model = student_from_checkpoint(payload, source=str(path))
    else:
        model = rebuild_mace_model(payload["model_config"], payload["state_dict"])
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
    fuse_message_passing: bool = True,
    precision: str | PrecisionPolicy | dict[str, Any] | None = None,
    **unknown: Any,
) -> Potential:
    """Load a mace-torch model for fast, exact evaluation.

    Args:
        path_or_module: a mace-torch ``.model`` file, a macelerate checkpoint, a TorchScript export,
            an ``nn.Module`` (copied, never changed) or a :class:`Potential` (re-wrapped).
        device: ``"cpu"`` or ``"cuda"``.
        dtype: ``"float64"`` (default, for exactness), ``"float32"``, or ``None`` to keep the
            model's own precision.
        head: readout head of a multi-head model.
        allow_pickle: allow unpickling mace-torch ``.model`` files (see
            :mod:`macelerate.models.mace_pickle`). ``False`` accepts only weights-only checkpoints.
        min_distance: Å below which structures are rejected as overlapping (``None`` disables).
        tune_allocator: on Linux/glibc, keep large tensors on the malloc heap once per process
            (see :mod:`macelerate.runtime.allocator`); this removes most of the page-fault time a
            CPU step spends. ``False`` leaves the allocator alone.
        fuse_message_passing: compute each interaction's edge tensor product and neighbour sum in
            one fused operation (:mod:`macelerate.runtime.fused_conv`); results equal mace-torch's
            to floating-point reordering, and no per-edge message tensor is formed (see README
            for the measured speed). ``False`` runs mace-torch's modules unchanged.
        precision: a precision policy (:class:`~macelerate.precision.PrecisionPolicy`, a preset
            name such as ``"fp32"``, ``"bf16-linear"``, ``"bf16-mixed"``, or a dict of fields):
            per-block storage and compute dtypes instead of one ``dtype``. With a policy,
            ``dtype`` must be left at its default (or ``None``).

    Returns:
        A :class:`Potential`.
    """
    if unknown:
        raise TypeError(f"load() got unknown options {sorted(unknown)}")
    torch_dtype = parse_dtype(dtype)
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
    return Potential(
        module,
        device=device,
        dtype=torch_dtype,
        head=head,
        min_distance=min_distance,
        fuse_message_passing=fuse_message_passing,
        source=source,
        precision=precision,
    )
