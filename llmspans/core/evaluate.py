"""Evaluating one whole trace: assemble its runs and attribute each one."""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter
from typing import Final

from llmspans.core.attribution import attribute
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.records import SpanRecord
from llmspans.core.runs import assemble

__all__ = ["evaluate_trace"]

_BAD_ATTRIBUTES: Final = attrgetter("bad_attributes")


def evaluate_trace(records: Sequence[SpanRecord], thresholds: Thresholds) -> TraceResult:
    """Runs with their verdicts, standalone stage spans and feedback spans of a trace.

    ``records`` are normally the spans of one trace; records of several traces are
    handled too (each span only ever joins a run of its own trace).
    """
    runs, standalone, feedback = assemble(records)
    return TraceResult(
        [(run, attribute(run, thresholds)) for run in runs],
        standalone,
        feedback,
        sum(map(_BAD_ATTRIBUTES, records)),
    )
