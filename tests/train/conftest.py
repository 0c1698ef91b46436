"""Fixtures of the training tests (defined in ``tests/train/__init__.py``)."""

from tests.train import one_torch_thread  # noqa: F401  (autouse: torch on one thread)
