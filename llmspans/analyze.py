"""``llmspans analyze FILE``: the per-stage report over recorded traces.

Reads OTLP JSON lines (one ``ExportTraceServiceRequest`` per line, as the
OpenTelemetry file exporters, the Collector's ``file`` exporter and
``llmspans-collector``'s file exporter write them; ``-`` reads standard input, a
name ending in ``.gz`` is read through gzip),
groups the spans by trace, evaluates every trace with the same core as the
collector and the embedded mode, and prints the report (``--json`` for machines).

A line that cannot be read is reported on standard error with its line number and
the path of the bad value; the well-formed spans of that line and every valid line
are still used. Exit status: 0 on success, 1 when the file
cannot be opened, 2 when it held no readable line at all.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import sys
import zlib
from collections.abc import Iterable
from typing import TextIO

from llmspans.core.convert import iter_otlp_json_lines
from llmspans.core.engine import Assembler, Engine
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.report import Report, ReportBuilder

__all__ = ["add_arguments", "analyze_lines", "run"]

#: How many unreadable lines are listed on stderr before the rest is summarised.
_MAX_LISTED_ERRORS = 20


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="OTLP JSON lines file (one export request per line), or -")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="retrieval fails as low_relevance when every score is below this (default: off)",
    )
    parser.add_argument(
        "--min-citation-precision",
        type=_unit_interval,
        default=1.0,
        help="generation fails as unsupported_citation below this citation precision "
        "(default: 1.0)",
    )


def analyze_lines(lines: Iterable[str], thresholds: Thresholds) -> Report:
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
    for record in iter_otlp_json_lines(lines, lambda line, error: skipped.append((line, error))):
        add(record, 0.0)
    builder = ReportBuilder()
    for trace, _ in engine.assembler.drain():
        result = engine.attribute(trace) or TraceResult(
            bad_attributes=sum(record.bad_attributes for record in trace.records)
        )
        builder.add(result, spans=len(trace.records) + trace.truncated)
    builder.report.skipped_lines = skipped
    return builder.report


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
        if args.file == "-":
            stdin = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
            report = analyze_lines(stdin, thresholds)
        else:
            # Bytes that are not UTF-8 become U+FFFD: such a line is still read, or
            # reported as unreadable, instead of ending the whole analysis.
            opener = gzip.open if args.file.endswith(".gz") else open
            with opener(args.file, "rt", encoding="utf-8", errors="replace") as lines:
                report = analyze_lines(lines, thresholds)
    except (OSError, EOFError, zlib.error) as error:
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
