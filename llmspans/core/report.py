"""The per-pipeline, per-stage report of ``llmspans analyze``.

A :class:`ReportBuilder` takes evaluated traces and accumulates exactly the
measurements the live metrics record (it is a sink of
:func:`llmspans.core.metrics.accumulate`),
keeping the raw values where the report shows quantiles or means. So a report over
recorded traces and the metrics of the collector or the embedded mode over the same
traffic agree by construction. Rendering (terminal table, JSON-ready dict) is pure:
the caller prints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmspans import _attributes as A
from llmspans.core.metrics import CALIBRATION_BINS, Labels, accumulate, calibration_bin
from llmspans.core.model import TraceResult

__all__ = ["PipelineReport", "Report", "ReportBuilder", "StageReport", "quantile"]


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile with linear interpolation between order statistics (numpy's
    default); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass
class StageReport:
    """One stage of one pipeline: its spans and the failed runs it caused."""

    calls: int = 0
    errors: int = 0
    durations: list[float] = field(default_factory=list)
    #: root-cause failures this stage caused, by reason
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def p50(self) -> float | None:
        return quantile(self.durations, 0.5)

    @property
    def p95(self) -> float | None:
        return quantile(self.durations, 0.95)


@dataclass
class PipelineReport:
    """Everything the report says about one pipeline."""

    name: str
    outcomes: dict[str, int] = field(default_factory=dict)
    stages: dict[str, StageReport] = field(default_factory=dict)
    task_durations: list[float] = field(default_factory=list)
    cost_usd: float = 0.0
    context_precision: list[float] = field(default_factory=list)
    context_recall: list[float] = field(default_factory=list)
    citation_precision: list[float] = field(default_factory=list)
    #: calibration counters: bin -> [runs, correct runs, confidence sum]
    calibration: dict[int, list[float]] = field(default_factory=dict)
    feedback: dict[str, int] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return sum(self.outcomes.values())

    @property
    def completion_rate(self) -> float | None:
        """success / all runs."""
        return self.outcomes.get(A.OUTCOME_SUCCESS, 0) / self.runs if self.runs else None

    @property
    def failures(self) -> int:
        return sum(sum(stage.failures.values()) for stage in self.stages.values())

    @property
    def cost_per_success(self) -> float | None:
        """All cost (of every outcome) divided by the successful runs."""
        successes = self.outcomes.get(A.OUTCOME_SUCCESS, 0)
        return self.cost_usd / successes if successes else None

    @property
    def calibrated_runs(self) -> int:
        return int(sum(counts[0] for counts in self.calibration.values()))

    @property
    def ece(self) -> float | None:
        """ECE from the calibration counters: Σ_bin |correct - confidence sum| / runs."""
        total = self.calibrated_runs
        if not total:
            return None
        return math.fsum(abs(c[1] - c[2]) for c in self.calibration.values()) / total

    def stage(self, name: str) -> StageReport:
        report = self.stages.get(name)
        if report is None:
            report = self.stages[name] = StageReport()
        return report


@dataclass
class Report:
    """The whole report: one entry per pipeline plus input totals."""

    pipelines: dict[str, PipelineReport] = field(default_factory=dict)
    traces: int = 0
    spans: int = 0
    bad_attributes: int = 0
    #: (line number, message) of input lines that could not be read
    skipped_lines: list[tuple[int, str]] = field(default_factory=list)
    #: the judged figures when evaluators ran (:func:`llmspans.core.judging.summarise`)
    evaluation: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``llmspans analyze --json``)."""
        return {
            "traces": self.traces,
            "spans": self.spans,
            "bad_attributes": self.bad_attributes,
            "skipped_lines": [{"line": line, "error": error} for line, error in self.skipped_lines],
            "pipelines": {
                name: _pipeline_json(pipeline) for name, pipeline in sorted(self.pipelines.items())
            },
        } | ({} if self.evaluation is None else {"evaluation": self.evaluation})

    def render(self) -> str:
        """A readable terminal table."""
        text = _render(self)
        return text if self.evaluation is None else text + _render_evaluation(self.evaluation)


class ReportBuilder:
    """Accumulates evaluated traces into a :class:`Report`.

    It is a :class:`~llmspans.core.metrics.MetricSink` of :func:`accumulate`, the one
    function every mode records metrics with, and keeps the raw values where the
    report shows quantiles or means.
    """

    def __init__(self) -> None:
        self.report = Report()

    def _pipeline(self, name: str) -> PipelineReport:
        pipeline = self.report.pipelines.get(name)
        if pipeline is None:
            pipeline = self.report.pipelines[name] = PipelineReport(name)
        return pipeline

    def add(self, result: TraceResult, spans: int = 0) -> None:
        """Add one evaluated trace (``spans``: how many records it was built from)."""
        report = self.report
        report.traces += 1
        report.spans += spans
        report.bad_attributes += result.bad_attributes
        accumulate(result, self)

    # --- the MetricSink interface ------------------------------------------------

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        found = dict(labels)
        pipeline = self._pipeline(found["pipeline"])
        if instrument == A.METRIC_STAGE_CALLS:
            stage = pipeline.stage(found["stage"])
            stage.calls += 1
            stage.errors += found["status"] == "error"
        elif instrument == A.METRIC_TASK_OUTCOMES:
            outcome = found["outcome"]
            pipeline.outcomes[outcome] = pipeline.outcomes.get(outcome, 0) + 1
        elif instrument == A.METRIC_STAGE_FAILURES:
            failures = pipeline.stage(found["stage"]).failures
            failures[found["reason"]] = failures.get(found["reason"], 0) + 1
        elif instrument == A.METRIC_TASK_COST:
            pipeline.cost_usd += value
        elif instrument == A.METRIC_FEEDBACK:
            kind = found["kind"]
            pipeline.feedback[kind] = pipeline.feedback.get(kind, 0) + 1

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        found = dict(labels)
        pipeline = self._pipeline(found["pipeline"])
        if instrument == A.METRIC_STAGE_DURATION:
            pipeline.stage(found["stage"]).durations.append(value)
        elif instrument == A.METRIC_TASK_DURATION:
            pipeline.task_durations.append(value)
        elif instrument == A.METRIC_CONTEXT_PRECISION:
            pipeline.context_precision.append(value)
        elif instrument == A.METRIC_CONTEXT_RECALL:
            pipeline.context_recall.append(value)
        elif instrument == A.METRIC_CITATION_PRECISION:
            pipeline.citation_precision.append(value)

    def calibrate(self, run: Labels, confidence: float, correct: bool) -> None:
        counts = self._pipeline(run[0][1]).calibration.setdefault(
            calibration_bin(confidence), [0.0, 0.0, 0.0]
        )
        counts[0] += 1.0
        counts[1] += 1.0 if correct else 0.0
        counts[2] += confidence


# --- rendering ----------------------------------------------------------------------

_STAGE_ORDER = (*A.PIPELINE_ORDER, A.STAGE_UNATTRIBUTED)


def _ordered_stages(pipeline: PipelineReport) -> list[str]:
    known = [stage for stage in _STAGE_ORDER if stage in pipeline.stages]
    return known + sorted(set(pipeline.stages) - set(_STAGE_ORDER))


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def _pipeline_json(pipeline: PipelineReport) -> dict[str, Any]:
    return {
        "runs": pipeline.runs,
        "outcomes": {outcome: pipeline.outcomes.get(outcome, 0) for outcome in A.OUTCOMES},
        "completion_rate": _round(pipeline.completion_rate),
        "failures": pipeline.failures,
        "task_duration_s": {
            "p50": _round(quantile(pipeline.task_durations, 0.5)),
            "p95": _round(quantile(pipeline.task_durations, 0.95)),
        },
        "stages": {
            name: {
                "calls": stage.calls,
                "errors": stage.errors,
                "p50_s": _round(stage.p50),
                "p95_s": _round(stage.p95),
                "root_cause_failures": sum(stage.failures.values()),
                "failures_by_reason": dict(sorted(stage.failures.items())),
            }
            for name, stage in ((n, pipeline.stages[n]) for n in _ordered_stages(pipeline))
        },
        "context_precision": {
            "mean": _round(_mean(pipeline.context_precision)),
            "runs": len(pipeline.context_precision),
        },
        "context_recall": {
            "mean": _round(_mean(pipeline.context_recall)),
            "runs": len(pipeline.context_recall),
        },
        "citation_precision": {
            "mean": _round(_mean(pipeline.citation_precision)),
            "generations": len(pipeline.citation_precision),
        },
        "calibration": {
            "ece": _round(pipeline.ece),
            "runs": pipeline.calibrated_runs,
            "bins": {
                str(index): {
                    "runs": int(counts[0]),
                    "correct": int(counts[1]),
                    "confidence_sum": _round(counts[2]),
                }
                for index, counts in sorted(pipeline.calibration.items())
                if 0 <= index < CALIBRATION_BINS
            },
        },
        "cost_usd": _round(pipeline.cost_usd, 9),
        "cost_per_success_usd": _round(pipeline.cost_per_success, 9),
        "feedback": dict(sorted(pipeline.feedback.items())),
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f}us"
    if value < 1:
        return f"{value * 1000:.1f}ms"
    return f"{value:.2f}s"


def _ratio(value: float | None, count: int) -> str:
    return "-" if value is None else f"{value:.3f} (n={count})"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[index]) for row in rows) for index in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[index]) if index in right else cell.ljust(widths[index])
            for index, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def _render(report: Report) -> str:
    lines = [
        f"{report.traces} traces, {report.spans} spans"
        + (
            f", {report.bad_attributes} attribute values of the wrong type ignored"
            if report.bad_attributes
            else ""
        )
        + (
            f", {len(report.skipped_lines)} unreadable lines skipped"
            if report.skipped_lines
            else ""
        )
    ]
    if not report.pipelines:
        lines.append("no pipeline runs or stage spans found")
    for name, pipeline in sorted(report.pipelines.items()):
        lines.append("")
        outcomes = ", ".join(
            f"{outcome} {pipeline.outcomes.get(outcome, 0)}" for outcome in A.OUTCOMES
        )
        rate = pipeline.completion_rate
        if pipeline.runs:
            lines.append(
                f"pipeline {name}: {pipeline.runs} runs ({outcomes}); completion rate "
                + ("-" if rate is None else f"{rate:.1%}")
            )
        else:
            lines.append(f"pipeline {name}: no runs (stage spans outside any pipeline run)")
        if pipeline.task_durations:
            lines.append(
                f"  task duration p50 {_seconds(quantile(pipeline.task_durations, 0.5))}, "
                f"p95 {_seconds(quantile(pipeline.task_durations, 0.95))}"
            )
        rows = [["stage", "calls", "errors", "p50", "p95", "root cause", "reasons"]]
        for stage_name in _ordered_stages(pipeline):
            stage = pipeline.stages[stage_name]
            reasons = ", ".join(
                f"{reason} {count}"
                for reason, count in sorted(stage.failures.items(), key=lambda item: -item[1])
            )
            rows.append(
                [
                    stage_name,
                    str(stage.calls) if stage.calls else "-",
                    str(stage.errors) if stage.calls else "-",
                    _seconds(stage.p50),
                    _seconds(stage.p95),
                    str(sum(stage.failures.values())),
                    reasons,
                ]
            )
        if len(rows) > 1:
            lines.extend(_table(rows, right={1, 2, 3, 4, 5}))
        if not pipeline.runs:
            if pipeline.feedback:
                lines.append(
                    "  feedback "
                    + ", ".join(f"{k} {c}" for k, c in sorted(pipeline.feedback.items()))
                )
            continue
        precision = _ratio(_mean(pipeline.context_precision), len(pipeline.context_precision))
        recall = _ratio(_mean(pipeline.context_recall), len(pipeline.context_recall))
        citations = _ratio(_mean(pipeline.citation_precision), len(pipeline.citation_precision))
        lines.append(
            f"  context precision {precision}; recall {recall}; citation precision {citations}"
            f"; ECE {_ratio(pipeline.ece, pipeline.calibrated_runs)}"
        )
        per_success = pipeline.cost_per_success
        lines.append(
            f"  cost ${pipeline.cost_usd:.6f}; per successful outcome "
            + ("-" if per_success is None else f"${per_success:.6f}")
        )
        if pipeline.feedback:
            lines.append(
                "  feedback "
                + ", ".join(f"{kind} {count}" for kind, count in sorted(pipeline.feedback.items()))
            )
    return "\n".join(lines) + "\n"


def _render_evaluation(summary: dict[str, Any]) -> str:
    """The judged figures after the report (``llmspans analyze --evaluator``)."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = ["", f"evaluation: {summary['sampled_runs']} sampled runs"]
    if summary["dropped"]:
        dropped = ", ".join(f"{reason} {count}" for reason, count in summary["dropped"].items())
        lines.append(f"  dropped: {dropped}")
    for name, entry in summary["evaluators"].items():
        verdicts = ", ".join(
            f"{verdict} {count}" for verdict, count in sorted(entry["verdicts"].items())
        )
        lines.append(f"  evaluator {name}: {verdicts}; cost ${entry['cost_usd']:.4f}")
        for aspect, counts in sorted(entry["agreement"].items()):
            total = counts["agree"] + counts["disagree"]
            lines.append(f"    agreement with labels, {aspect}: {counts['agree']}/{total}")
    for name, entry in summary["pipelines"].items():
        lines.append(
            f"  pipeline {name}: {entry['judged_runs']} judged runs; judged context precision "
            f"{number(entry['context_precision'])}, recall {number(entry['context_recall'])}, "
            f"citation support {number(entry['citation_support'])}"
        )
        for cause, count in sorted(entry["judged_failures"].items()):
            lines.append(f"    judged failure {cause}: {count}")
    return "\n".join(lines) + "\n"
