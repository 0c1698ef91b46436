"""Resumable training state: everything needed to continue a run exactly where it stopped.

Layout (a ``torch.save`` of plain data, loadable with ``weights_only=True``)::

    {
      "format": "macelerate-train-state", "format_version": 1,
      "step": int,                     # optimisation steps done
      "model": {...},                  # state dict of the training copy (fused layout if fused)
      "ema": {...} | None,             # ExponentialMovingAverage.state_dict()
      "optimizer": {...},
      "scheduler": {...} | None,       # CosineSchedule.state_dict() or ReduceLROnPlateau's
      "config": {...},                 # TrainConfig.to_dict()
      "data_fingerprint": str,         # sha256 of the training structures and labels
      "history": [...],                # per-epoch records so far
      "epoch_sums": {...},             # running sums of the unfinished epoch
      "bad_batches": int,              # batches skipped for a NaN/inf loss or gradient
      "sparsity": {...} | None,        # SparseMasks.state_dict(): boolean masks, update count
      "mixed_precision": {...} | None, # MixedPrecision.state_dict(): loss scale, overflow steps
    }

Only finite states are written (:func:`macelerate.train.guard.require_finite`).

The epoch order of the structures is drawn from a generator seeded with ``(seed, epoch)``, so the
step count alone fixes where in the data a resumed run continues; no global RNG is used.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from macelerate.atomic_io import write_atomically
from macelerate.errors import MacelerateError
from macelerate.train.data import LabelledData

STATE_FORMAT = "macelerate-train-state"
STATE_VERSION = 1
RESUMABLE_CHANGES = frozenset(
    {
        "epochs", "max_steps", "resume", "progress", "checkpoint_path", "checkpoint_every",
        "device", "max_bad_batches", "max_seconds", "early_stop_patience",
    }
)  # fmt: skip
"""TrainConfig fields that may differ between a run and its resumption."""


class TrainStateError(MacelerateError, ValueError):
    """A training-state file that cannot resume this run (damaged, foreign or mismatched)."""


def data_fingerprint(data: LabelledData) -> str:
    """SHA-256 over the structures' elements, positions, cells and labels (order-sensitive)."""
    digest = hashlib.sha256()
    for graph, labels in zip(data.graphs, data.labels):
        for key in ("atomic_numbers", "positions", "cell", "edge_index"):
            digest.update(graph[key].detach().cpu().contiguous().numpy().tobytes())
        for value in (labels.energy, labels.forces, labels.stress, labels.hessian_rows):
            if value is not None:
                digest.update(torch.as_tensor(value).double().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_train_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (see the module docstring) atomically, tensors detached on the CPU."""

    def to_cpu(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().clone()
        if isinstance(value, dict):
            return {k: to_cpu(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(to_cpu(v) for v in value)
        return value

    payload = {"format": STATE_FORMAT, "format_version": STATE_VERSION, **to_cpu(state)}
    return write_atomically(path, lambda tmp: torch.save(payload, tmp))


def load_train_state(path: str | Path) -> dict[str, Any]:
    """Read a training-state file with ``weights_only=True``.

    Raises:
        TrainStateError: missing, damaged or not a training-state file.
    """
    path = Path(path)
    if not path.is_file():
        raise TrainStateError(f"training state {path} does not exist; run without resume first")
    try:
        payload = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise TrainStateError(f"{path} is not a readable training state ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != STATE_FORMAT:
        raise TrainStateError(f"{path} is not a macelerate training state")
    if payload.get("format_version") != STATE_VERSION:
        raise TrainStateError(
            f"{path} has training-state format {payload.get('format_version')}; this macelerate "
            f"reads {STATE_VERSION}"
        )
    return payload


def check_resumable(
    state: dict[str, Any], *, config: dict[str, Any], fingerprint: str, path: str | Path
) -> None:
    """Raise :class:`TrainStateError` unless ``state`` continues a run with this config and data."""
    changed = sorted(
        key
        for key in set(config) | set(state["config"])
        if key not in RESUMABLE_CHANGES and config.get(key) != state["config"].get(key)
    )
    if changed:
        raise TrainStateError(
            f"{path} was written with different settings ({changed}: "
            f"{[state['config'].get(k) for k in changed]} -> {[config.get(k) for k in changed]}); "
            "resume with the original settings or start a new run without resume"
        )
    if state["data_fingerprint"] != fingerprint:
        raise TrainStateError(
            f"{path} was written for different training data; resume with the same structures "
            "(and validation split) or start a new run without resume"
        )
