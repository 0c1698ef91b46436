"""``macelerate report``: Markdown tables and PNG figures from bench and eval result files.

::

    from macelerate.report import build_report
    result = build_report(["bench.json", "eval.json"], out_dir="report")
    print(result.markdown_path, result.plot_paths)

Modules, lowest first: :mod:`~macelerate.report.loading` (read and validate files),
:mod:`~macelerate.report.analysis` (speed-ups, groups, Pareto selection; pure),
:mod:`~macelerate.report.markdown` and :mod:`~macelerate.report.plots` (render),
:mod:`~macelerate.report.build` (the driver). Names are imported eagerly: the package is light
(matplotlib is imported only when a figure is drawn).
"""

from __future__ import annotations

from macelerate.report.analysis import ReportOptionError, pareto_front
from macelerate.report.build import ReportResult, build_report
from macelerate.report.loading import ResultFileError, load_results

__all__ = [
    "ReportOptionError",
    "ReportResult",
    "ResultFileError",
    "build_report",
    "load_results",
    "pareto_front",
]
