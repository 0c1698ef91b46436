"""Damaged, edited and non-finite model files: one ModelFileError line naming problem and fix."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from macelerate._mace import model_construction
from macelerate.demo import __file__ as demo_init
from macelerate.errors import ModelFileError
from macelerate.models.convert import convert
from macelerate.models.loading import load

DEMO_STUDENT = Path(demo_init).parent / "go_small_student.pt"


def _refused(path: Path, match: str) -> str:
    with pytest.raises(ModelFileError, match=match) as caught:
        load(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


@pytest.fixture(scope="module")
def checkpoint_payload(tiny_model_file, tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    convert(tiny_model_file, path)
    return torch.load(path, weights_only=True)


def _save_edited(payload: dict, tmp_path: Path, edit) -> Path:
    edited = copy.deepcopy(payload)
    edit(edited)
    path = tmp_path / "edited.pt"
    torch.save(edited, path)
    return path


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.999])
def test_truncated_model_file(tiny_model_file, tmp_path, fraction):
    data = tiny_model_file.read_bytes()
    path = tmp_path / "truncated.model"
    path.write_bytes(data[: int(len(data) * fraction)])
    _refused(path, "truncated or damaged")


def test_corrupted_bytes_inside_the_archive(tiny_model_file, tmp_path):
    data = bytearray(tiny_model_file.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 2000] = bytes(2000)
    path = tmp_path / "corrupted.model"
    path.write_bytes(bytes(data))
    _refused(path, "fails its checksum")


def test_a_directory_is_named_as_such(tmp_path):
    message = _refused(tmp_path, "is a directory")
    assert "does not exist" not in message


EDITS = {
    "missing-r_max": (lambda p: p["model_config"].pop("r_max"), r"lacks \['r_max'\]"),
    "missing-interaction_cls": (
        lambda p: p["model_config"].pop("interaction_cls"),
        r"lacks \['interaction_cls'\]",
    ),
    "unknown-interaction_cls": (
        lambda p: p["model_config"].update(interaction_cls="os.system"),
        "names no mace-torch block",
    ),
    "bad-irreps": (
        lambda p: p["model_config"].update(hidden_irreps="8x0e+garbage"),
        "'hidden_irreps' is not an irreps string",
    ),
    "bad-r_max-type": (
        lambda p: p["model_config"].update(r_max="four"),
        "cannot be built",
    ),
    "unknown-model-class": (
        lambda p: p["model_config"].update(model_class="EvilMACE"),
        "unsupported model class 'EvilMACE'",
    ),
    "wrong-shape": (
        lambda p: p["state_dict"].update(
            {"node_embedding.linear.weight": torch.zeros(3, dtype=torch.float64)}
        ),
        "weights do not fit the model config.*node_embedding.linear.weight",
    ),
    "missing-weight": (
        lambda p: p["state_dict"].pop("node_embedding.linear.weight"),
        "missing",
    ),
    "not-a-tensor": (
        lambda p: p["state_dict"].update({"node_embedding.linear.weight": [1.0, 2.0]}),
        "are not tensors",
    ),
    "nan-weight": (
        lambda p: p["state_dict"]["node_embedding.linear.weight"].view(-1)[3:5].fill_(float("nan")),
        "'node_embedding.linear.weight' holds 2 NaN/inf",
    ),
    "inf-buffer": (
        lambda p: p["state_dict"]["atomic_energies_fn.atomic_energies"].fill_(float("inf")),
        "'atomic_energies_fn.atomic_energies' holds .* NaN/inf",
    ),
    "no-model-config": (lambda p: p.pop("model_config"), "lacks a 'model_config' dictionary"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edited_checkpoint(checkpoint_payload, tmp_path, name):
    edit, match = EDITS[name]
    _refused(_save_edited(checkpoint_payload, tmp_path, edit), match)


@pytest.fixture(scope="module")
def student_payload() -> dict:
    return torch.load(DEMO_STUDENT, weights_only=True)


STUDENT_EDITS = {
    "no-student-config": (
        lambda p: p["model_config"].pop("student"),
        "lacks its 'student' config",
    ),
    "no-backbone-config": (
        lambda p: p["model_config"].pop("backbone"),
        "lacks its 'backbone' config",
    ),
    "unknown-student-key": (
        lambda p: p["model_config"]["student"].update(channelz=8),
        "unknown StudentConfig keys",
    ),
    "student-missing-r_max": (
        lambda p: p["model_config"]["backbone"].pop("r_max"),
        r"lacks \['r_max'\]",
    ),
    "student-wrong-shape": (
        lambda p: p["state_dict"].update(
            {"backbone.node_embedding.linear.weight": torch.zeros(2, dtype=torch.float32)}
        ),
        "weights do not fit the student config",
    ),
}


@pytest.mark.parametrize("name", sorted(STUDENT_EDITS))
def test_edited_student_checkpoint(student_payload, tmp_path, name):
    edit, match = STUDENT_EDITS[name]
    _refused(_save_edited(student_payload, tmp_path, edit), match)


def test_pickle_with_nan_weights_names_file_and_parameter(tiny_model, tmp_path):
    with model_construction():
        model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.readouts[0].linear.weight[0] = float("nan")
    path = tmp_path / "nan.model"
    torch.save(model, path)
    _refused(path, "'readouts.0.linear.weight' holds 1 NaN/inf")


def test_torchscript_needs_allow_pickle_and_finite_weights(tmp_path):
    from macelerate.models.loading import read_model_file

    linear = torch.nn.Linear(2, 2)
    path = tmp_path / "scripted.model"
    with model_construction():
        torch.jit.save(torch.jit.script(linear), str(path))
    with pytest.raises(ModelFileError, match="TorchScript export .* allow_pickle=False"):
        read_model_file(path, allow_pickle=False)
    assert read_model_file(path)[1].kind == "torchscript"
    with torch.no_grad():
        linear.bias[1] = float("inf")
    with model_construction():
        torch.jit.save(torch.jit.script(linear), str(path))
    _refused(path, "'bias' holds 1 NaN/inf")
