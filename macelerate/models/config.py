"""A mace-torch ``ScaleShiftMACE`` described as plain data, and rebuilt from that description.

mace-torch models do not store their constructor arguments; ``mace.tools.scripts_utils.
extract_config_mace_model`` reads them back from the module. This file turns that into JSON-safe
data (class names, irreps strings, lists) and rebuilds the module from it, so a checkpoint never
needs to pickle code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from macelerate._mace import import_mace, mace_modules, quiet_model_construction
from macelerate._torch_state import default_dtype
from macelerate.errors import ModelFileError

CLASS_KEYS = ("interaction_cls", "interaction_cls_first", "readout_cls")
IRREPS_KEYS = ("hidden_irreps", "MLP_irreps", "edge_irreps")
GATES = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "abs": torch.abs}
SUPPORTED_MODEL_CLASSES = ("ScaleShiftMACE",)


def _gate_name(gate: Any) -> str | None:
    if gate is None:
        return None
    for name, function in GATES.items():
        if gate is function or getattr(gate, "__name__", None) == name:
            return name
    raise ModelFileError(f"unsupported gate non-linearity {gate!r}; supported: {sorted(GATES)}")


def _plain(value: Any) -> Any:
    """numpy/torch values -> Python floats, ints and nested lists."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe_mace_model(model: torch.nn.Module) -> dict[str, Any]:
    """JSON-safe constructor arguments of a ``ScaleShiftMACE``, plus ``model_class`` and ``dtype``.

    Raises:
        ModelFileError: the module is not a supported mace-torch model (e.g. TorchScript,
            cuEquivariance-converted or another architecture).
    """
    class_name = type(model).__name__
    if class_name not in SUPPORTED_MODEL_CLASSES:
        raise ModelFileError(
            f"cannot describe a {class_name}: macelerate converts {SUPPORTED_MODEL_CLASSES} "
            "(TorchScript and other architectures run, but cannot be converted)"
        )
    import_mace()
    from mace.tools.scripts_utils import extract_config_mace_model

    raw = extract_config_mace_model(model)
    if raw.get("cueq_config") is not None:
        raise ModelFileError("this model uses cuEquivariance layers; convert it back to e3nn first")
    config: dict[str, Any] = {}
    for key, value in raw.items():
        if key in CLASS_KEYS:
            config[key] = value.__name__
        elif key in IRREPS_KEYS:
            config[key] = None if value is None else str(value)
        elif key == "gate":
            config[key] = _gate_name(value)
        else:
            config[key] = _plain(value)
    config["model_class"] = class_name
    config["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return config


def _resolve_class(name: str, base: type) -> type:
    blocks = mace_modules().blocks
    cls = getattr(blocks, name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ModelFileError(f"unknown mace-torch block {name!r} in model config")
    return cls


def build_mace_model(config: dict[str, Any]) -> torch.nn.Module:
    """Construct a fresh, untrained mace-torch model from :func:`describe_mace_model` output."""
    modules = mace_modules()
    from e3nn import o3

    kwargs = {k: v for k, v in config.items() if k not in ("model_class", "dtype")}
    model_class = getattr(modules, config.get("model_class", ""), None)
    if config.get("model_class") not in SUPPORTED_MODEL_CLASSES or model_class is None:
        raise ModelFileError(f"unsupported model class {config.get('model_class')!r}")
    kwargs["interaction_cls"] = _resolve_class(kwargs["interaction_cls"], torch.nn.Module)
    kwargs["interaction_cls_first"] = _resolve_class(
        kwargs["interaction_cls_first"], torch.nn.Module
    )
    kwargs["readout_cls"] = _resolve_class(kwargs["readout_cls"], torch.nn.Module)
    for key in IRREPS_KEYS:
        if kwargs.get(key) is not None:
            kwargs[key] = o3.Irreps(kwargs[key])
    kwargs["gate"] = None if kwargs.get("gate") is None else GATES[kwargs["gate"]]
    kwargs["atomic_energies"] = np.asarray(kwargs["atomic_energies"], dtype=np.float64)
    kwargs["atomic_inter_scale"] = np.asarray(kwargs["atomic_inter_scale"], dtype=np.float64)
    kwargs["atomic_inter_shift"] = np.asarray(kwargs["atomic_inter_shift"], dtype=np.float64)
    dtype = getattr(torch, config.get("dtype", "float64"))
    with default_dtype(dtype), quiet_model_construction():
        model = model_class(**kwargs)
    return model.to(dtype)


def rebuild_mace_model(
    config: dict[str, Any], state_dict: dict[str, torch.Tensor]
) -> torch.nn.Module:
    """Build from ``config`` and load ``state_dict`` strictly.

    Files written by older mace-torch lack the boolean ``*_zeroed`` buffers newer versions register
    for symmetric contractions; those alone may be missing, and keep the values the constructor
    derived from the same structure.
    """
    model = build_mace_model(config)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in result.missing_keys if not key.endswith("_zeroed")]
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"weights do not fit the model config: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    return model.eval()
