"""The experiment report: every system's frame accuracy, WER and speed, the gain the
student keeps, and plots (``asr-kd report``; see :mod:`asr_kd.report.report`)."""

from asr_kd.report.collect import (
    SystemDirs,
    SystemResult,
    collect,
    discover_systems,
    read_systems_file,
)
from asr_kd.report.document import gain_kept, results_document
from asr_kd.report.report import report

__all__ = [
    "SystemDirs",
    "SystemResult",
    "collect",
    "discover_systems",
    "gain_kept",
    "read_systems_file",
    "report",
    "results_document",
]
