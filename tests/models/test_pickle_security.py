"""mace-torch pickles: only allow-listed globals, nothing from the file runs, real models load.

Every payload below would create ``marker`` if any of its code ran; each test asserts that the
load fails with ModelFileError (or, for the inert reducer, succeeds) and that ``marker`` is absent.
"""

from __future__ import annotations

import builtins
import copy
import operator
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.fx.graph_module
from numpy.testing._private.utils import runstring

from macelerate._mace import import_mace, model_construction
from macelerate.errors import ModelFileError
from macelerate.models import mace_pickle
from macelerate.models.loading import load, read_model_file


class Call:
    """Pickles as ``func(*args)``: what a malicious ``__reduce__`` looks like."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)

    def __call__(self, *args):  # pickle wants the func of a reduce to be callable
        raise AssertionError("never called here")


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _payloads(marker: Path) -> dict[str, object]:
    import_mace()  # e3nn (below) must be imported after mace
    fx_source = _touch(marker) + "\ndef forward(self):\n    return None\n"
    return {
        "numpy-runstring": Call(runstring, _touch(marker), {}),
        "fx-forward-from-src": Call(torch.fx.graph_module._forward_from_src, fx_source, {}),
        "builtins-eval": Call(builtins.eval, _touch(marker)),
        "builtins-exec": Call(builtins.exec, _touch(marker)),
        "builtins-getattr": Call(builtins.getattr, torch.zeros(1), "numpy"),
        "attrgetter-chain": Call(Call(operator.attrgetter, "__class__.__init__"), torch.zeros(1)),
        "torch-C-function": Call(torch._C._log_api_usage_once, "pwned"),
        "numpy-load": Call(np.load, str(marker), None, True),
        "numpy-save": Call(np.save, str(marker), np.zeros(1)),
        "torch-save": Call(torch.save, {}, str(marker)),
        "os-system": Call(os.system, f"touch {marker}"),
        "allowed-class-called": Call(mace_pickle._import("e3nn.o3._irreps.Irreps"), "1x0e"),
        "reference-called": Call(torch.nn.functional.silu, torch.zeros(1)),
    }


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "payload_ran"


PAYLOADS = (
    "numpy-runstring", "fx-forward-from-src", "builtins-eval", "builtins-exec",
    "builtins-getattr", "attrgetter-chain", "torch-C-function", "numpy-load", "numpy-save",
    "torch-save", "os-system", "allowed-class-called", "reference-called",
)  # fmt: skip


@pytest.mark.parametrize("name", PAYLOADS)
def test_payload_is_refused_and_never_runs(name, tmp_path, marker):
    path = tmp_path / f"{name}.model"
    torch.save({"model": [_payloads(marker)[name]]}, path)
    with pytest.raises(ModelFileError, match="refuses to unpickle"):
        load(path)
    assert not marker.exists()


def test_stack_global_protocol_4_payload_is_refused(tmp_path, marker):
    """STACK_GLOBAL takes the names from the stack (memoised strings), not from the opcode."""
    path = tmp_path / "evil.model"
    payload = Call(torch.fx.graph_module._forward_from_src, _touch(marker) + "\nforward=1", {})
    torch.save(payload, path, pickle_protocol=4)
    with open(path, "rb") as handle:  # the names are split from the opcode as STACK_GLOBAL does
        assert b"_forward_from_src" in handle.read()
    with pytest.raises(ModelFileError, match="not on the allow-list"):
        load(path)
    assert not marker.exists()


class _EvilGraphModule(torch.nn.Module):
    """Pickles like an fx GraphModule whose stored source writes ``marker``."""

    def __init__(self, marker: Path):
        super().__init__()
        self.marker = marker

    def __reduce__(self):
        body = {"_code": f"\n{_touch(self.marker)}\ndef forward(self):\n    return None\n"}
        return (torch.fx.graph_module.reduce_graph_module, (body, "import os\n"))


def test_allowed_reducer_never_execs_stored_source(tiny_model, tmp_path, marker, silicon):
    """reduce_graph_module is on the list only as an inert stand-in: the model still loads."""
    with model_construction():
        model = copy.deepcopy(tiny_model)
    contraction = model.products[0].symmetric_contractions.contractions[0]
    contraction.graph_opt_main = _EvilGraphModule(marker)
    path = tmp_path / "graph.model"
    torch.save(model, path)
    potential = load(path)
    assert not marker.exists()
    reference = load(tiny_model).predict(silicon)
    np.testing.assert_allclose(potential.predict(silicon).forces, reference.forces, atol=1e-12)


def _rewrite_pickle(path: Path, data: bytes) -> None:
    """Replace the pickle inside a torch zip archive by ``data``."""
    with zipfile.ZipFile(path) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in records.items():
            archive.writestr(name, data if name.endswith("/data.pkl") else blob)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x02(X\x04\x00\x00\x001x0eie3nn.o3._irreps\nIrreps\n.",  # INST calls the class
        b"\x80\x02(ce3nn.o3._irreps\nIrreps\nX\x04\x00\x00\x001x0eo.",  # OBJ calls the class
        b"\x80\x02cbuiltins\nprint\nX\x01\x00\x00\x00x\x85R.",  # builtins.print("x")
        b"\x80\x02c__builtin__\neval\nX\x01\x00\x00\x001\x85R.",  # Python 2 name
        b"\x80\x02}X\x01\x00\x00\x00ak\x00b.",  # BUILD on a dict (not a module)
    ],
    ids=["INST", "OBJ", "print", "py2-eval", "BUILD-dict"],
)
def test_raw_opcodes_that_call_or_set_state_are_refused(tmp_path, data):
    path = tmp_path / "raw.model"
    torch.save({"a": 1}, path)
    _rewrite_pickle(path, data)
    with pytest.raises(ModelFileError):
        read_model_file(path)


def test_stored_torchscript_is_never_compiled(tiny_model_file, monkeypatch, silicon):
    """e3nn's CodeGenMixin.__setstate__ would torch.jit.load bytes from the file; it is skipped."""

    def refuse(*args, **kwargs):
        raise AssertionError("torch.jit.load ran while reading a pickle")

    monkeypatch.setattr(torch.jit, "load", refuse)
    model, source = read_model_file(tiny_model_file)
    assert source.kind == "mace-pickle"
    assert not any(isinstance(m, mace_pickle.InertGraphModule) for m in model.modules())


def test_allow_list_is_exact_and_holds_no_generic_gadgets():
    names = (
        set(mace_pickle.MODULE_CLASSES)
        | set(mace_pickle.VALUE_CLASSES)
        | set(mace_pickle.FUNCTIONS)
        | set(mace_pickle.REFERENCES)
    )
    gadgets = {
        "builtins.getattr", "builtins.eval", "builtins.exec", "builtins.compile",
        "builtins.__import__", "operator.attrgetter", "operator.methodcaller",
        "functools.partial", "torch.load", "torch.serialization.load", "numpy.load",
        "torch.fx.graph_module._forward_from_src", "os.system", "subprocess.Popen",
    }  # fmt: skip
    assert not names & gadgets
    assert not any(name.startswith("torch._C") or name.endswith(".") for name in names)
    for name in mace_pickle.MODULE_CLASSES:
        assert issubclass(mace_pickle._import(name), torch.nn.Module), name
    assert mace_pickle.FUNCTIONS["torch.fx.graph_module.reduce_graph_module"] is not (
        torch.fx.graph_module.reduce_graph_module
    )


def test_models_mace_torch_writes_today_need_nothing_else(tiny_model_file):
    allowed = (
        set(mace_pickle.MODULE_CLASSES)
        | set(mace_pickle.VALUE_CLASSES)
        | set(mace_pickle.FUNCTIONS)
        | set(mace_pickle.REFERENCES)
    )
    referenced = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(tiny_model_file)))
    assert referenced <= allowed, referenced - allowed


def test_training_checkpoint_dict_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "train.pt"
    torch.save({"model": torch.nn.Linear(2, 2), "optimizer": {}}, path)
    with pytest.raises(ModelFileError, match="not on the allow-list"):
        load(path)


@pytest.mark.slow
@pytest.mark.needs_shared_data
def test_every_real_checkpoint_loads_rebuilt_and_predicts_as_saved(shared_data):
    """Rebuilt models equal a plain (trusting) torch.load of the same file; TorchScript runs."""
    from macelerate.models.convert import _probe_structure
    from macelerate.models.potential import Potential

    paths = sorted((shared_data / "models").glob("*/*.model"))
    assert len(paths) >= 9
    allowed = (
        set(mace_pickle.MODULE_CLASSES)
        | set(mace_pickle.VALUE_CLASSES)
        | set(mace_pickle.FUNCTIONS)
        | set(mace_pickle.REFERENCES)
    )
    for path in paths:
        model, source = read_model_file(path)
        probe = _probe_structure([int(z) for z in model.atomic_numbers], float(model.r_max))
        ours = Potential.from_module(model, dtype=torch.float64, min_distance=None).predict(probe)
        assert np.isfinite(ours.forces).all(), path
        if source.kind == "torchscript":
            continue
        assert source.kind == "mace-pickle"
        referenced = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
        assert referenced <= allowed, (path, referenced - allowed)
        with model_construction():
            original = torch.load(
                path, map_location="cpu", weights_only=False, pickle_module=pickle
            )
        theirs = Potential.from_module(original, dtype=torch.float64, min_distance=None).predict(
            probe
        )
        assert abs(ours.energy - theirs.energy).max() < 1e-10, path
        np.testing.assert_allclose(ours.forces, theirs.forces, atol=1e-10, err_msg=str(path))
