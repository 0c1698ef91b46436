"""macelerate checkpoints: model config + state dict + provenance, readable with ``weights_only``.

Layout (a ``torch.save`` of plain data, never of modules)::

    {
      "format": "macelerate-checkpoint",
      "format_version": 1,
      "model_config": {...},          # macelerate.mace.config.describe_mace_model output
      "state_dict": {...},            # tensors
      "transforms_applied": [...],    # TransformRecord.to_dict(): {"name": "prune", "persistent",
                                      # "options", "summary"}; [] for a plain conversion
      "provenance": {...},            # source file, its sha256, versions, date
    }

Older format versions are upgraded on load by ``_migrate_v{N}_to_v{N+1}`` functions.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from macelerate._version import __version__
from macelerate.atomic_io import write_atomically
from macelerate.errors import ModelFileError

FORMAT_NAME = "macelerate-checkpoint"
FORMAT_VERSION = 1
_MIGRATIONS: dict[int, Any] = {}  # version N -> function upgrading a v N dict to v N+1


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_provenance(source: str, **extra: Any) -> dict[str, Any]:
    """Where a checkpoint came from: source, library versions and UTC date."""
    import mace

    return {
        "source": source,
        "macelerate_version": __version__,
        "mace_torch_version": getattr(mace, "__version__", "unknown"),
        "torch_version": str(torch.__version__),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def save_checkpoint(
    path: str | Path,
    *,
    model_config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    provenance: dict[str, Any],
    transforms_applied: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint atomically. Tensors are saved detached, on the CPU."""
    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_config": model_config,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "transforms_applied": list(transforms_applied or []),
        "provenance": provenance,
    }
    return write_atomically(path, lambda tmp: torch.save(payload, tmp))


def is_checkpoint(payload: Any) -> bool:
    """True if ``payload`` (a loaded object) is a macelerate checkpoint dictionary."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT_NAME


def upgrade_checkpoint(payload: dict[str, Any], *, source: str) -> dict[str, Any]:
    """Apply format migrations until ``payload`` is at :data:`FORMAT_VERSION`."""
    version = payload.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{source}: checkpoint has no valid format_version ({version!r})")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: checkpoint format {version} is newer than this macelerate reads "
            f"({FORMAT_VERSION}); upgrade macelerate"
        )
    while version < FORMAT_VERSION:
        payload = _MIGRATIONS[version](payload)
        version = payload["format_version"]
    for key in ("model_config", "state_dict", "provenance"):
        if not isinstance(payload.get(key), dict):
            raise ModelFileError(
                f"{source}: checkpoint lacks a '{key}' dictionary; the file is damaged or was "
                "edited: write it again with 'macelerate convert' (or the command that made it)"
            )
    if not isinstance(payload.get("transforms_applied", []), list):
        raise ModelFileError(f"{source}: 'transforms_applied' is not a list; the file was edited")
    tensors = payload["state_dict"]
    not_tensors = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ModelFileError(
            f"{source}: state_dict entries {not_tensors[:3]} are not tensors; the file is damaged "
            "or was edited: write it again with 'macelerate convert'"
        )
    check_finite(tensors, source=source)
    return payload


def check_finite(tensors: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Refuse weights holding NaN or infinity (they would make every prediction NaN).

    Args:
        tensors: name -> tensor, e.g. a state dict.
        source: the file, named in the error.

    Raises:
        ModelFileError: naming the first non-finite tensor and how many entries are bad.
    """
    for name, tensor in tensors.items():
        if tensor.is_floating_point() or tensor.is_complex():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise ModelFileError(
                    f"{source}: weight '{name}' holds {bad} NaN/inf value(s) of {tensor.numel()}; "
                    "the model was saved after its training diverged or the file is damaged: "
                    "use an earlier checkpoint or retrain"
                )
