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


class MDInstabilityError(MacelerateError, RuntimeError):
    """An MD run that blew up (temperature, energy drift or forces out of bounds, atoms overlapping,
    or NaN); ``step`` is the step it was stopped at, ``result`` the run up to there (an
    :class:`~macelerate.md.MDResult`, or None)."""

    def __init__(self, message: str, *, step: int, result: object | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.result = result


class PrecisionLossWarning(UserWarning):
    """Coordinates so large that the graph's float dtype rounds them by more than ~1e-4 Å."""
