"""The one function that unpickles mace-torch ``.model`` files, and what it guarantees.

mace-torch saves whole ``nn.Module`` objects with ``torch.save``; a plain ``torch.load`` of such a
file runs whatever the pickle names. :func:`load_mace_pickle` instead reads the pickle with a
restricting unpickler and then rebuilds the model from plain data. The guarantee:

1. **Nothing outside an exact allow-list is imported or called.** Every global the pickle names
   is checked against :data:`MODULE_CLASSES`, :data:`VALUE_CLASSES`, :data:`FUNCTIONS` and
   :data:`REFERENCES` (full ``module.name`` strings, never prefixes) before it is imported; any
   other name stops the load with :class:`~macelerate.errors.ModelFileError`.
2. **Allowed classes are never called.** Module classes are only allocated (``cls.__new__``) and
   given their saved attributes with ``torch.nn.Module.__setstate__``, so no constructor and no
   class-specific ``__setstate__`` runs. In particular e3nn's ``CodeGenMixin.__setstate__``, which
   would compile the TorchScript bytes stored in the file, is skipped: those bytes are discarded.
   Only the callables in :data:`FUNCTIONS` may be called by the pickle (tensor rebuilding,
   ``OrderedDict``, ``set``, latin-1 bytes); the ``torch.fx`` graph-module reducer, which would
   ``exec`` Python source stored in the file, is replaced by an inert stand-in.
3. **No code from the file ever runs, now or later.** The unpickled object is an inert description
   that is never executed: its constructor arguments are read back as plain data
   (:func:`~macelerate.mace.config.describe_mace_model`), a fresh model is built from them by
   the installed mace-torch, and the file's tensors are loaded into it with strict name and shape
   checks (:func:`~macelerate.mace.config.rebuild_mace_model`). Non-finite weights are refused.

What this does not protect against: a file can still hold wrong weights (the model then predicts
garbage, as any model file can), and very large tensors cost memory. The rebuilt model equals the
saved one to 1e-10 eV/Å on every real checkpoint tested (``tests/models/test_pickle_security.py``).

TorchScript archives (``torch.jit.save``) are read with ``torch.jit.load``: no Python from the
file runs, but the archive's TorchScript program (torch operators only) does, at load and at every
prediction. ``macelerate.load(..., allow_pickle=False)`` refuses both kinds of file.
"""

from __future__ import annotations

import collections
import importlib
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

import torch

from macelerate._mace import import_mace, model_construction
from macelerate.errors import ModelFileError
from macelerate.mace.config import describe_mace_model, rebuild_mace_model
from macelerate.models.checkpoint import check_finite

MODEL_CLASSES = ("mace.modules.models.ScaleShiftMACE", "mace.modules.models.MACE")
"""Top-level objects a ``.model`` file may hold."""

MODULE_CLASSES = frozenset({
    *MODEL_CLASSES,
    "mace.modules.blocks.AtomicEnergiesBlock",
    "mace.modules.blocks.EquivariantProductBasisBlock",
    "mace.modules.blocks.LinearNodeEmbeddingBlock",
    "mace.modules.blocks.LinearReadoutBlock",
    "mace.modules.blocks.NonLinearReadoutBlock",
    "mace.modules.blocks.RadialEmbeddingBlock",
    "mace.modules.blocks.RealAgnosticInteractionBlock",
    "mace.modules.blocks.RealAgnosticResidualInteractionBlock",
    "mace.modules.blocks.ScaleShiftBlock",
    "mace.modules.irreps_tools.reshape_irreps",
    "mace.modules.radial.BesselBasis",
    "mace.modules.radial.PolynomialCutoff",
    "mace.modules.radial.ZBLBasis",
    "mace.modules.symmetric_contraction.Contraction",
    "mace.modules.symmetric_contraction.SymmetricContraction",
    "e3nn.math._normalize_activation.normalize2mom",
    "e3nn.nn._activation.Activation",
    "e3nn.nn._fc.FullyConnectedNet",
    "e3nn.nn._fc._Layer",
    "e3nn.o3._linear.Linear",
    "e3nn.o3._spherical_harmonics.SphericalHarmonics",
    "e3nn.o3._tensor_product._sub.FullyConnectedTensorProduct",
    "e3nn.o3._tensor_product._tensor_product.TensorProduct",
    "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.container.ParameterList",
})  # fmt: skip
"""``nn.Module`` classes: allocated with ``cls.__new__(cls)``, state set by
``nn.Module.__setstate__``; never called."""

VALUE_CLASSES = frozenset({
    "e3nn.o3._irreps.Irrep",
    "e3nn.o3._irreps.Irreps",
    "e3nn.o3._irreps._MulIr",
    "e3nn.o3._linear.Instruction",
    "e3nn.o3._tensor_product._instruction.Instruction",
})  # fmt: skip
"""Immutable tuple types, created with ``cls.__new__(cls, *saved_fields)`` (e3nn parses them)."""


def _rebuild_tensor(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    if hooks or not isinstance(storage, torch.storage.TypedStorage):
        raise pickle.UnpicklingError("a tensor in the file is not plain stored data")
    return torch._utils._rebuild_tensor_v2(
        storage, offset, size, stride, requires_grad, collections.OrderedDict(), metadata
    )


def _rebuild_parameter(data, requires_grad, hooks):
    if hooks or not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("a parameter in the file is not a plain tensor")
    return torch.nn.Parameter(data, requires_grad)


def _latin1_bytes(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not allowed")
    return text.encode("latin-1")


class InertGraphModule(torch.nn.Module):
    """Stands where the file has a ``torch.fx`` GraphModule; its source code is never compiled."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("code stored in a model file is never run; rebuild the model instead")


def _inert_graph_module(body: Any, import_block: Any) -> InertGraphModule:
    return InertGraphModule()


FUNCTIONS = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "_codecs.encode": _latin1_bytes,
    "torch.fx.graph_module.reduce_graph_module": _inert_graph_module,
}
"""Callables the pickle may call, by name -> what is called instead (checked or inert)."""

REFERENCES = {
    "torch.nn.functional.silu": torch.nn.functional.silu,
    "torch.fx._symbolic_trace.Tracer": None,  # only inside GraphModule bodies, which are dropped
}
"""Globals stored as attribute values (the gate non-linearity), never called by the pickle."""

_PY2_NAMES = {"__builtin__.set": "builtins.set"}  # protocol-2 pickles use Python 2 names

_CALLABLE = frozenset(map(id, FUNCTIONS.values()))


def _import(qualified: str) -> Any:
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


class RestrictedUnpickler(pickle._Unpickler):  # the Python unpickler: its opcodes can be replaced
    """An unpickler that admits only the allow-listed globals and never calls classes."""

    dispatch: dict[int, Any] = dict(pickle._Unpickler.dispatch)  # type: ignore[misc]
    stack: list[Any]  # pickle._Unpickler's value stack, set by load()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._module_classes: set[type] = set()  # allow-listed classes this pickle named
        self._value_classes: set[type] = set()

    def find_class(self, module: str, name: str) -> Any:
        qualified = _PY2_NAMES.get(f"{module}.{name}", f"{module}.{name}")
        if qualified in FUNCTIONS:
            return FUNCTIONS[qualified]
        if qualified in REFERENCES:
            return REFERENCES[qualified]
        if qualified in MODULE_CLASSES:
            cls = _import(qualified)
            self._module_classes.add(cls)
            return cls
        if qualified in VALUE_CLASSES:
            cls = _import(qualified)
            self._value_classes.add(cls)
            return cls
        raise pickle.UnpicklingError(f"it names {qualified}, which is not on the allow-list")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE or not isinstance(args, tuple):
            raise pickle.UnpicklingError(f"it calls {_name(func)}, which no model file calls")
        self.stack[-1] = func(*args)

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        allowed = cls in self._value_classes or (cls in self._module_classes and args == ())
        if not allowed or not isinstance(args, tuple):
            raise pickle.UnpicklingError(f"it creates {_name(cls)} in a way no model file does")
        self.stack.append(cls.__new__(cls, *args))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) not in self._module_classes or not isinstance(state, dict):
            raise pickle.UnpicklingError(f"it sets the state of a {_name(type(inst))}")
        state = {key: value for key, value in state.items() if key != "__codegen__"}
        torch.nn.Module.__setstate__(inst, state)  # never the class's own __setstate__

    def load_refused(self) -> None:
        raise pickle.UnpicklingError("it uses pickle opcodes (INST/OBJ/NEWOBJ_EX) no model uses")

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.INST[0]] = load_refused
    dispatch[pickle.OBJ[0]] = load_refused
    dispatch[pickle.NEWOBJ_EX[0]] = load_refused


def _name(obj: Any) -> str:
    obj = obj if isinstance(obj, type) or callable(obj) else type(obj)
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', '?')}"


_PICKLE_MODULE = types.ModuleType("macelerate_restricted_pickle")
_PICKLE_MODULE.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
_PICKLE_MODULE.load = pickle.load  # type: ignore[attr-defined]
_PICKLE_MODULE.__dict__["__name__"] = "macelerate_restricted_pickle"


def is_torchscript_archive(path: Path) -> bool:
    """True if ``path`` is a TorchScript zip (it has a ``code/`` folder).

    Raises:
        ModelFileError: ``path`` is not a readable zip archive.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelFileError(
            f"{path} is not a readable model archive ({error}); the file is truncated or damaged: "
            "copy or download it again"
        ) from error


def module_tensors(module: torch.nn.Module, *, source: str) -> dict[str, torch.Tensor]:
    """The persistent parameters and buffers of an unpickled module tree, as a state dict.

    Walks ``_modules``, ``_parameters`` and ``_buffers`` directly (no state-dict hooks run) and
    checks that every node is an allow-listed module class.

    Raises:
        ModelFileError: the tree holds something other than allow-listed modules and tensors.
    """
    tensors: dict[str, torch.Tensor] = {}
    pending: list[tuple[str, Any]] = [("", module)]
    while pending:
        prefix, node = pending.pop()
        if isinstance(node, InertGraphModule):
            continue
        state = node.__dict__ if isinstance(node, torch.nn.Module) else None
        if _name(type(node)) not in MODULE_CLASSES or not isinstance(state, dict):
            raise ModelFileError(f"{source} holds a {_name(type(node))} inside the model")
        skip = state.get("_non_persistent_buffers_set", set())
        for kind in ("_parameters", "_buffers"):
            for key, value in dict(state.get(kind, {})).items():
                if value is not None and key not in skip:
                    if not isinstance(value, torch.Tensor):
                        raise ModelFileError(f"{source}: {prefix}{key} is not a tensor")
                    tensors[f"{prefix}{key}"] = value.detach()
        for key, child in dict(state.get("_modules", {})).items():
            if child is not None:
                pending.append((f"{prefix}{key}.", child))
    return tensors


def _unpickle(path: Path) -> torch.nn.Module:
    """The inert module tree of a ``torch.save`` pickle (see the module docstring)."""
    try:
        loaded = torch.load(
            str(path), map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE
        )
    except pickle.UnpicklingError as error:
        raise ModelFileError(
            f"{path} is not a mace-torch model file: {error}. macelerate refuses to unpickle it. "
            "If it is a mace-torch training checkpoint (*.pt with optimizer state), export a "
            ".model file with mace-torch first"
        ) from error
    except Exception as error:  # torch raises several types for damaged archives
        raise ModelFileError(
            f"{path} is a damaged torch archive ({type(error).__name__}: {error}); copy or "
            "download it again"
        ) from error
    if _name(type(loaded)) not in MODEL_CLASSES:
        raise ModelFileError(
            f"{path} holds a {_name(type(loaded))}, not a mace-torch model: mace-torch training "
            "checkpoints (*.pt with optimizer state) must be exported as .model files first"
        )
    return loaded


def load_mace_pickle(path: str | Path) -> torch.nn.Module:
    """Read a mace-torch ``.model`` pickle without running code from it; a fresh model on the CPU.

    Unpickles with :class:`RestrictedUnpickler`, reads the constructor arguments and tensors,
    refuses non-finite weights, and builds the model anew with the installed mace-torch
    (:func:`~macelerate.mace.config.rebuild_mace_model`). See the module docstring.

    Raises:
        ModelFileError: the file is foreign, damaged, holds non-finite weights or a model that
            macelerate cannot rebuild.
    """
    path = Path(path)
    import_mace()  # the allow-listed classes live in mace and e3nn
    with model_construction():
        inert = _unpickle(path)
        tensors = module_tensors(inert, source=str(path))
        check_finite(tensors, source=str(path))
        try:
            config = describe_mace_model(inert)
        except ModelFileError as error:
            raise ModelFileError(f"{path}: {error}") from error
        except Exception as error:
            raise ModelFileError(
                f"{path} does not describe a mace-torch model ({type(error).__name__}: {error}); "
                "the file is damaged or was edited"
            ) from error
        return rebuild_mace_model(config, tensors, source=str(path))


def load_torchscript(path: str | Path) -> torch.nn.Module:
    """Read a TorchScript export with ``torch.jit.load`` (no Python runs; its TorchScript does).

    Raises:
        ModelFileError: the archive is broken or holds non-finite weights.
    """
    path = Path(path)
    import_mace()
    try:
        with model_construction():
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:
        raise ModelFileError(
            f"{path} is a broken TorchScript archive ({error}); export it again"
        ) from error
    check_finite(module.state_dict(), source=str(path))
    return module
