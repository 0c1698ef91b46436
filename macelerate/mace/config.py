"""A mace-torch ``ScaleShiftMACE`` or ``MACE`` described as plain data, and rebuilt from it.

mace-torch models do not store their constructor arguments; ``mace.tools.scripts_utils.
extract_config_mace_model`` reads them back from the module. This file turns that into JSON-safe
data (class names, irreps strings, lists) and rebuilds the module from it, so a checkpoint never
needs to pickle code.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from macelerate._dtypes import DTYPES, MODEL_DTYPES, dtype_name
from macelerate._mace import import_mace, mace_modules, model_construction
from macelerate._torch_state import default_dtype
from macelerate.errors import ModelFileError
from macelerate.mace.contract import MODEL_CLASSES

CLASS_KEYS = ("interaction_cls", "interaction_cls_first", "readout_cls")
IRREPS_KEYS = ("hidden_irreps", "MLP_irreps", "edge_irreps")
GATES = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "abs": torch.abs}
SCALE_SHIFT_KEYS = ("atomic_inter_scale", "atomic_inter_shift")


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


class _ScaleShiftView:
    """A plain ``MACE`` seen as a ``ScaleShiftMACE`` with scale 1 and shift 0 (read-only).

    mace-torch's ``extract_config_mace_model`` accepts only ``ScaleShiftMACE``; the two classes
    share every constructor argument but the scale and shift.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self._model = model
        self.scale_shift = SimpleNamespace(scale=torch.ones(()), shift=torch.zeros(()))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


_ScaleShiftView.__name__ = "ScaleShiftMACE"


def describe_mace_model(model: torch.nn.Module) -> dict[str, Any]:
    """JSON-safe constructor arguments of a ``ScaleShiftMACE`` or ``MACE``, plus ``model_class``
    and ``dtype``. Reads attributes only; runs no forward pass and changes nothing.

    Raises:
        ModelFileError: the module is not a supported mace-torch model (e.g. TorchScript,
            cuEquivariance-converted or another architecture).
    """
    class_name = type(model).__name__
    if class_name not in MODEL_CLASSES:
        raise ModelFileError(
            f"cannot describe a {class_name}: macelerate converts {MODEL_CLASSES} "
            "(TorchScript and other architectures run, but cannot be converted)"
        )
    import_mace()
    from mace.tools.scripts_utils import extract_config_mace_model

    view = model if class_name == "ScaleShiftMACE" else _ScaleShiftView(model)
    raw = extract_config_mace_model(view)  # type: ignore[arg-type]
    if raw.get("cueq_config") is not None:
        raise ModelFileError("this model uses cuEquivariance layers; convert it back to e3nn first")
    if class_name == "MACE":
        raw = {k: v for k, v in raw.items() if k not in SCALE_SHIFT_KEYS}
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
    config["dtype"] = dtype_name(next(model.parameters()).dtype)
    return config


def scale_shift_mace_config(
    *,
    atomic_numbers: Sequence[int],
    atomic_energies: Sequence[float],
    channels: int,
    max_L: int,
    max_ell: int,
    correlation: int,
    num_interactions: int,
    r_max: float,
    radial_mlp: Sequence[int],
    mlp_channels: int,
    num_bessel: int,
    num_polynomial_cutoff: int,
    avg_num_neighbors: float,
    atomic_inter_scale: float = 1.0,
    atomic_inter_shift: float = 0.0,
    pair_repulsion: bool = False,
    dtype: str = "float64",
) -> dict[str, Any]:
    """Constructor arguments of a plain ``ScaleShiftMACE`` in :func:`build_mace_model` format.

    Residual interaction blocks throughout, a non-linear last readout, silu gates and hidden
    irreps ``channels x 0e + channels x 1o + ...`` up to ``max_L``.

    Args:
        atomic_numbers: the elements, in one-hot order.
        atomic_energies: E0 in eV per element, in the order of ``atomic_numbers``.
        channels: multiplicity of every hidden irrep.
        max_L: largest L of the hidden features.
        max_ell: largest L of the edge spherical harmonics.
        correlation: body order of the symmetric contraction.
        num_interactions: message-passing layers.
        r_max: cutoff in Å.
        radial_mlp: hidden widths of the radial MLPs.
        mlp_channels: scalars of the non-linear readout (``MLP_irreps``).
        num_bessel: radial Bessel basis functions.
        num_polynomial_cutoff: exponent p of the polynomial envelope.
        avg_num_neighbors: the message normalisation.
        atomic_inter_scale, atomic_inter_shift: scale (eV) and shift (eV) of atomic energies.
        pair_repulsion: add mace-torch's ZBL pair term.
        dtype: ``"float64"`` or ``"float32"``.
    """
    hidden = "+".join(f"{channels}x{ell}{'eo'[ell % 2]}" for ell in range(max_L + 1))
    return {
        "model_class": "ScaleShiftMACE",
        "dtype": dtype,
        "r_max": float(r_max),
        "num_bessel": int(num_bessel),
        "num_polynomial_cutoff": int(num_polynomial_cutoff),
        "max_ell": int(max_ell),
        "interaction_cls": "RealAgnosticResidualInteractionBlock",
        "interaction_cls_first": "RealAgnosticResidualInteractionBlock",
        "readout_cls": "NonLinearReadoutBlock",
        "num_interactions": int(num_interactions),
        "num_elements": len(atomic_numbers),
        "hidden_irreps": hidden,
        "MLP_irreps": f"{mlp_channels}x0e",
        "gate": "silu",
        "atomic_energies": [float(e) for e in atomic_energies],
        "avg_num_neighbors": float(avg_num_neighbors),
        "atomic_numbers": [int(z) for z in atomic_numbers],
        "correlation": int(correlation),
        "radial_MLP": [int(width) for width in radial_mlp],
        "atomic_inter_scale": float(atomic_inter_scale),
        "atomic_inter_shift": float(atomic_inter_shift),
        "use_reduced_cg": False,
        "pair_repulsion": bool(pair_repulsion),
    }


def _resolve_class(name: Any, key: str) -> type:
    blocks = mace_modules().blocks
    cls = getattr(blocks, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise ValueError(f"'{key}' names no mace-torch block ({name!r})")
    return cls


def _required_keys(model_class: type) -> set[str]:
    """Constructor arguments without defaults (``MACE``'s, plus ``ScaleShiftMACE``'s own)."""
    required = set()
    for cls in (model_class, mace_modules().MACE):
        for parameter in inspect.signature(cls).parameters.values():
            plain = parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
            if plain and parameter.default is parameter.empty:
                required.add(parameter.name)
    return required


def _constructor_kwargs(config: dict[str, Any], model_class: type) -> dict[str, Any]:
    """``config`` -> keyword arguments of the mace-torch constructor (classes, Irreps, arrays)."""
    from e3nn import o3

    kwargs = {k: v for k, v in config.items() if k not in ("model_class", "dtype")}
    missing = sorted(_required_keys(model_class) - set(kwargs))
    if missing:
        raise ValueError(f"the model config lacks {missing}")
    for key in CLASS_KEYS:
        if key in kwargs:
            kwargs[key] = _resolve_class(kwargs[key], key)
    for key in IRREPS_KEYS:
        if kwargs.get(key) is not None:
            try:
                kwargs[key] = o3.Irreps(kwargs[key])
            except Exception as error:
                raise ValueError(f"'{key}' is not an irreps string ({kwargs[key]!r})") from error
    if kwargs.get("gate") is not None and kwargs["gate"] not in GATES:
        raise ValueError(f"'gate' must be one of {sorted(GATES)} or None, not {kwargs['gate']!r}")
    kwargs["gate"] = None if kwargs.get("gate") is None else GATES[kwargs["gate"]]
    for key in ("atomic_energies", *SCALE_SHIFT_KEYS):
        if key in kwargs:
            kwargs[key] = np.asarray(kwargs[key], dtype=np.float64)
    return kwargs


def build_mace_model(config: dict[str, Any], *, source: str = "model config") -> torch.nn.Module:
    """Construct a fresh, untrained mace-torch model from :func:`describe_mace_model` output.

    Built inside :func:`macelerate._mace.model_construction` (one thread at a time) in the
    config's dtype.

    Args:
        config: constructor arguments as plain data (class names, irreps strings, lists).
        source: the file the config came from, named in errors.

    Raises:
        ModelFileError: the config is incomplete, names unknown classes, holds a bad irreps
            string or values the constructor rejects.
    """
    modules = mace_modules()
    name = config.get("model_class") if isinstance(config, dict) else None
    if name not in MODEL_CLASSES:
        raise ModelFileError(
            f"{source}: unsupported model class {name!r} (macelerate builds "
            f"{MODEL_CLASSES}); the file is damaged or not a mace-torch model"
        )
    name_of_dtype = config.get("dtype", "float64")
    if name_of_dtype not in MODEL_DTYPES:
        raise ModelFileError(
            f"{source}: model dtype must be float64 or float32, not {name_of_dtype!r}"
        )
    dtype = DTYPES[name_of_dtype]
    model_class = getattr(modules, name)
    try:
        kwargs = _constructor_kwargs(config, model_class)
        with default_dtype(dtype), model_construction():
            model = model_class(**kwargs).to(dtype)
    except Exception as error:
        raise ModelFileError(
            f"{source}: the model config cannot be built ({type(error).__name__}: {error}); the "
            "file is damaged or was edited: write it again with 'macelerate convert'"
        ) from error
    return model


def _codegen_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """State-dict prefixes of e3nn's generated TorchScript submodules (constants such as w3j)."""
    return tuple(
        f"{name}.{fname}." if name else f"{fname}."
        for name, module in model.named_modules()
        for fname in getattr(module, "__codegen__", ())
    )


def load_error_detail(error: RuntimeError) -> str:
    """The first problem of a multi-line ``load_state_dict`` error, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)


def rebuild_mace_model(
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    *,
    source: str = "model config",
) -> torch.nn.Module:
    """Build from ``config`` and load ``state_dict`` strictly, in evaluation mode.

    Two kinds of entry may be missing, and keep the values the constructor derived from the same
    structure: the boolean ``*_zeroed`` buffers newer mace-torch registers for symmetric
    contractions, and the constants of e3nn's generated code (mace-torch pickles keep those
    inside compiled TorchScript, not in their state).

    Raises:
        ModelFileError: the config cannot be built, or the weights do not fit it (names or shapes).
    """
    model = build_mace_model(config, source=source)
    generated = _codegen_prefixes(model)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as error:  # shapes that do not match
        raise ModelFileError(
            f"{source}: weights do not fit the model config ({load_error_detail(error)}); the "
            "file is damaged or was edited: write it again with 'macelerate convert'"
        ) from error
    missing = [
        key for key in result.missing_keys
        if not key.endswith("_zeroed") and not key.startswith(generated)
    ]  # fmt: skip
    if missing or result.unexpected_keys:
        raise ModelFileError(
            f"{source}: weights do not fit the model config: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}; the file is damaged or was edited"
        )
    return model.eval()
