"""``macelerate report``: Markdown tables and PNG figures from bench and eval result files.

from macelerate.report import build_report
result = build_report(["bench.json", "eval.json"], out_dir="report")
print(result.markdown_path, result.plot_paths)
"""

from __future__ import annotations

from macelerate.report.build import (
    ReportOptionError,
    ReportResult,
    build_report,
    pareto_front,
)
from macelerate.report.loading import ResultFileError, load_results

__all__ = [
    "ReportOptionError",
    "ReportResult",
    "ResultFileError",
    "build_report",
    "load_results",
    "pareto_front",
]
