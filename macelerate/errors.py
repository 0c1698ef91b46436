"""The errors macelerate raises for bad input: each names the problem and the fix."""

from __future__ import annotations


class MacelerateError(Exception):
    """Base class of every error macelerate raises on purpose."""


class StructureError(MacelerateError, ValueError):
    """An atomic structure the model cannot evaluate (NaN positions, overlaps, empty, ...)."""


class UnknownElementError(StructureError):
    """A structure holds an element the model was not trained on."""


class ModelFileError(MacelerateError, ValueError):
    """A file that is not a model macelerate can read (corrupted, foreign, or unsafe)."""


class DataFileError(MacelerateError, ValueError):
    """A data file that lacks the requested labels or cannot be read."""
