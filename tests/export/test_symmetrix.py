"""``export_symmetrix``: refused clearly without Symmetrix-XL or when its converter refuses.

Symmetrix-XL's converter runs in a subprocess that imports mace-torch (10-20 s), and Symmetrix's
calculator compiles C++ kernels for each new model shape (minutes on a first run; Symmetrix caches
them under ~/.cache/symmetrix): the tests that run them are marked slow.
"""

from __future__ import annotations

import importlib.util

import pytest

from macelerate._torch_state import _denormals_flushed
from macelerate.bench import peers
from macelerate.export import ExportError, export_symmetrix
from macelerate.testing import tiny_mace

needs_symmetrix = pytest.mark.skipif(
    importlib.util.find_spec("symmetrix") is None,
    reason="symmetrix-xl is not installed (pip install 'macelerate[peers]')",
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """Converted models go to a temporary ``$MACELERATE_CACHE``."""
    monkeypatch.setenv("MACELERATE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_missing_symmetrix_is_one_clear_error(tmp_path, monkeypatch, tiny_model):
    def missing() -> str:
        raise peers.PeerEngineError(f"Symmetrix-XL is not installed: {peers.INSTALL_HINT}")

    monkeypatch.setattr(peers, "symmetrix_version", missing)
    with pytest.raises(ExportError, match="Symmetrix-XL is not installed: pip install"):
        export_symmetrix(tiny_model, tmp_path / "model.json")
    assert not (tmp_path / "model.json").exists()


def test_students_are_refused_before_converting(tmp_path, students, monkeypatch):
    def missing() -> str:
        raise peers.PeerEngineError(f"Symmetrix-XL is not installed: {peers.INSTALL_HINT}")

    # the model's own problem is named first, whether or not Symmetrix-XL is installed
    monkeypatch.setattr(peers, "symmetrix_version", missing)
    with pytest.raises(ExportError, match="direct force head"):
        export_symmetrix(students["direct"], tmp_path / "model.json")


@pytest.mark.slow
@needs_symmetrix
def test_converter_refusal_is_passed_on(tmp_path, cache, tiny_model):
    out = tmp_path / "model.json"
    with pytest.raises(ExportError, match="symmetrix_extract_mace could not convert.*l_max=3"):
        export_symmetrix(tiny_model, out)  # l_max 2
    assert not out.exists()


@pytest.mark.slow
@needs_symmetrix
def test_symmetrix_matches_macelerate(tmp_path, cache):
    model = tiny_mace([14], max_ell=3, correlation=3, channels=4)
    out = tmp_path / "model.json"
    report = export_symmetrix(model, out)
    assert out.is_file() and report.engine.startswith("symmetrix-xl")
    assert report.agreement.max_abs_force_diff <= 1e-6
    assert not _denormals_flushed()  # Symmetrix's flush-to-zero does not leak to the caller
