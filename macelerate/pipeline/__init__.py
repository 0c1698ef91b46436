"""``compress``: from a teacher and the user's structures to a validated fast student.

::

    from macelerate.pipeline import CompressConfig, compress
    result = compress("teacher.model", [start], "out", config=CompressConfig(target_speedup=10))
    print(result.verdict)  # report card: out/report.md, numbers: out/summary.json

Stages: teacher MD sampling split by trajectory segment (:mod:`.sampling`), teacher labels, a
ladder of student architectures timed on the user's structure (:mod:`.ladder`), training inside
the budget (:mod:`.selection`), validation (:mod:`.validation`) and the report card
(:mod:`.report_card`); :mod:`.state` makes the run resumable. Names are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from macelerate._lazy import lazy_exports

if TYPE_CHECKING:
    from macelerate.pipeline.compress import CompressResult, compress
    from macelerate.pipeline.config import CompressConfig, CompressConfigError, SamplingConfig
    from macelerate.pipeline.ladder import Candidate, default_ladder
    from macelerate.pipeline.state import CompressStateError
    from macelerate.pipeline.validation import StudentValidation, ValidationConfig, validate_student

_EXPORTS = {
    "compress": "macelerate.pipeline.compress",
    "CompressResult": "macelerate.pipeline.compress",
    "CompressConfig": "macelerate.pipeline.config",
    "CompressConfigError": "macelerate.pipeline.config",
    "SamplingConfig": "macelerate.pipeline.config",
    "Candidate": "macelerate.pipeline.ladder",
    "default_ladder": "macelerate.pipeline.ladder",
    "CompressStateError": "macelerate.pipeline.state",
    "StudentValidation": "macelerate.pipeline.validation",
    "ValidationConfig": "macelerate.pipeline.validation",
    "validate_student": "macelerate.pipeline.validation",
}

__all__ = [
    "Candidate",
    "CompressConfig",
    "CompressConfigError",
    "CompressResult",
    "CompressStateError",
    "SamplingConfig",
    "StudentValidation",
    "ValidationConfig",
    "compress",
    "default_ladder",
    "validate_student",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
