"""The public API is discoverable: dir(), help(), type-checker imports and real docstrings."""

from __future__ import annotations

import inspect
import pydoc

import macelerate

PUBLIC = ("load", "Potential", "Prediction", "build_graph", "Calculator", "convert", "describe")


def test_dir_lists_every_public_name():
    names = dir(macelerate)
    for name in (*PUBLIC, "PrecisionPolicy", "apply_precision", "__version__"):
        assert name in names
    assert "import_module" not in names and "TYPE_CHECKING" not in names
    assert set(macelerate.__all__) <= set(names)


def test_help_documents_the_public_names():
    text = pydoc.render_doc(macelerate, renderer=pydoc.plaintext)
    for name in PUBLIC:
        assert name in text
    assert "load(path_or_module" in text and "class Calculator" in text


def test_calculator_init_documents_its_own_arguments():
    doc = inspect.getdoc(macelerate.Calculator.__init__)
    assert "model_or_path" in doc and "load_options" in doc
    assert "Basic calculator implementation" not in doc  # ASE's docstring


def test_type_checkers_see_the_names():
    source = inspect.getsource(macelerate)
    assert "if TYPE_CHECKING:" in source
    for name in PUBLIC:
        assert f"import {name}" in source or f", {name}" in source
