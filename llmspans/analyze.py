"""``llmspans analyze FILE``: the per-stage report over recorded traces.

Reads OTLP JSON lines (one ``ExportTraceServiceRequest`` per line, as the
OpenTelemetry file exporters, the Collector's ``file`` exporter and
``llmspans-collector``'s file exporter write them; ``-`` reads standard input, a
name ending in ``.gz`` is read through gzip),
groups the spans by trace, evaluates every trace with the same core as the
collector and the embedded mode, and prints the report (``--json`` for machines).

A line that cannot be read (not JSON, malformed OTLP, or JSON that is no trace
export request, such as ``{"a": 1}``) is reported on standard error with its line
number and the path of the bad value; the well-formed spans of that line and every
valid line are still used. A ``.gz`` file cut short (a copy interrupted, a disk
full) is read up to the break, with a warning that says where it broke.

Exit status (also in ``--help``): 0 the report was printed (bad lines, if any,
listed on standard error); 1 the file cannot be read at all (missing, unreadable,
not gzip, or broken before its first line); 2 wrong arguments, or the input held
not one readable line.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Final, TextIO

from llmspans._argtypes import positive_int, probability
from llmspans._tracefiles import (
    MAX_LINE_BYTES,
    Unreadable,
    iter_otlp_json_lines,
    open_trace_lines,
)
from llmspans.core.engine import Assembler, Engine
from llmspans.core.judging import (
    EvaluatedRun,
    sampled_runs,
    summarise,
)
from llmspans.core.metrics import Aggregates
from llmspans.core.model import Run, Thresholds, TraceResult, Verdict
from llmspans.core.report import Report, ReportBuilder
from llmspans.evaluation._runner import (
    EvaluationRunner,
    Evaluator,
    load_evaluator,
    record_outcomes,
)

__all__ = ["EXIT_STATUS", "add_arguments", "analyze_lines", "run"]

#: How many unreadable lines are listed on stderr before the rest is summarised.
_MAX_LISTED_ERRORS = 20

EXIT_STATUS: Final = """exit status:
  0  the report was printed (unreadable lines, if any, are listed on stderr)
  1  the file cannot be read at all (missing, unreadable, not gzip, broken before
     its first line)
  2  wrong arguments, or the input held not one readable line"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "The per-stage report over recorded traces: OTLP JSON lines, as the OpenTelemetry "
        "file exporters and llmspans-collector's file exporter write them."
    )
    parser.epilog = EXIT_STATUS
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "file",
        help="OTLP JSON lines file (one export request per line; .gz is unpacked), or -",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--max-line-bytes",
        type=positive_int,
        default=MAX_LINE_BYTES,
        help="a longer line is reported and skipped without being held whole "
        f"(default: {MAX_LINE_BYTES}, 64 MiB)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="retrieval fails as low_relevance when every score is below this (default: off)",
    )
    parser.add_argument(
        "--min-citation-precision",
        type=probability,
        default=1.0,
        help="generation fails as unsupported_citation below this citation precision "
        "(default: 1.0)",
    )
    parser.add_argument(
        "--evaluator",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="judge the sampled runs (llmspans.evaluation.sampled) with this evaluator, "
        "package.module:function; repeatable (docs/evaluation.md)",
    )
    parser.add_argument(
        "--evaluation-timeout",
        type=float,
        default=60.0,
        help="seconds one evaluator call may take (default: 60)",
    )


def analyze_lines(
    lines: Iterable[str],
    thresholds: Thresholds,
    evaluators: Sequence[tuple[str, Evaluator]] = (),
    *,
    evaluation_timeout_s: float = 60.0,
    evaluation_concurrency: int = 4,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Report:
    """The report over OTLP JSON lines; unreadable lines are listed in ``skipped_lines``.

    The engine every mode runs assembles the spans by trace (a file holds whole
    traces: nothing is final before the end) and attributes each trace; the report
    is a sink of the same metric code as the collector's and the embedded mode's.
    """
    skipped: list[tuple[int, str]] = []
    engine = Engine(
        thresholds,
        assembler=Assembler(trace_idle_s=math.inf, trace_timeout_s=math.inf),
    )
    add = engine.assembler.add
    for record in iter_otlp_json_lines(
        lines, lambda line, error: skipped.append((line, error)), max_line_bytes
    ):
        add(record, 0.0)
    builder = ReportBuilder()
    sampled: list[tuple[Run, Verdict, EvaluatedRun]] = []
    for trace, _ in engine.assembler.drain():
        result = engine.attribute(trace) or TraceResult(
            bad_attributes=sum(record.bad_attributes for record in trace.records)
        )
        builder.add(result, spans=len(trace.records) + trace.truncated)
        if evaluators:
            sampled.extend(sampled_runs(result))
    builder.report.skipped_lines = skipped
    if evaluators:
        builder.report.evaluation = _evaluate(
            sampled, evaluators, thresholds, evaluation_timeout_s, evaluation_concurrency
        )
    return builder.report


def _evaluate(
    sampled: Sequence[tuple[Run, Verdict, EvaluatedRun]],
    evaluators: Sequence[tuple[str, Evaluator]],
    thresholds: Thresholds,
    timeout_s: float,
    concurrency: int,
) -> dict[str, Any]:
    """Every evaluator over every sampled run of the file; the judged figures.

    The runner is the collector's, with a queue as long as the file's sampled runs
    (offline nothing is dropped for room) and no budget.
    """
    judged = Aggregates()
    runner: EvaluationRunner[tuple[Run, Verdict]] = EvaluationRunner(
        evaluators,
        concurrency=concurrency,
        queue_size=max(1, len(sampled)),
        timeout_s=timeout_s,
    )
    try:
        for run, verdict, evaluated in sampled:
            runner.submit((run, verdict), evaluated)
        runner.drain()
    finally:
        runner.close(timeout_s=1.0)
    outcomes, dropped = runner.take()
    record_outcomes(outcomes, dropped, judged, thresholds)
    return summarise(judged, len(sampled))


def _report_skipped(report: Report, stderr: TextIO) -> None:
    for line, error in report.skipped_lines[:_MAX_LISTED_ERRORS]:
        print(f"llmspans analyze: skipped line {line}: {error}", file=stderr)
    hidden = len(report.skipped_lines) - _MAX_LISTED_ERRORS
    if hidden > 0:
        print(f"llmspans analyze: ... and {hidden} more unreadable lines", file=stderr)


def run(args: argparse.Namespace) -> int:
    thresholds = Thresholds(
        min_score=args.min_score, min_citation_precision=args.min_citation_precision
    )

    try:
        evaluators = [(spec, load_evaluator(spec)) for spec in args.evaluator]
    except ValueError as error:
        print(f"llmspans analyze: {error}", file=sys.stderr)
        return 2

    def analyze(lines: Iterable[str]) -> Report:
        return analyze_lines(
            lines,
            thresholds,
            evaluators,
            evaluation_timeout_s=args.evaluation_timeout,
            max_line_bytes=args.max_line_bytes,
        )

    def warn_break(message: str) -> None:
        print(f"llmspans analyze: warning: {args.file}: {message}", file=sys.stderr)

    try:
        # Bytes that are not UTF-8 become U+FFFD: such a line is still read, or
        # reported as unreadable, instead of ending the whole analysis.
        with open_trace_lines(args.file, warn_break, args.max_line_bytes) as lines:
            report = analyze(lines)
    except (OSError, Unreadable) as error:
        reason = getattr(error, "strerror", None) or str(error)
        print(f"llmspans analyze: cannot read {args.file}: {reason}", file=sys.stderr)
        return 1
    _report_skipped(report, sys.stderr)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.render())
    if report.skipped_lines and report.traces == 0:
        return 2
    return 0
