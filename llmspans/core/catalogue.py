"""The metric catalogue: one row per metric, the single source of every metric's shape.

The collector's ``/metrics`` text and OTLP push, the embedded mode's endpoint and
push, ``llmspans analyze``'s report and the metric table of ``docs/metrics.md`` are
all produced from these rows: adding a metric or a label is one edit here (and the
code in :mod:`llmspans.core.metrics` that measures it). ``docs/conventions.md``
section 4 is the contract the rows follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from llmspans import _attributes as A

__all__ = [
    "CALIBRATION_BINS",
    "CATALOGUE",
    "COLLECTOR_HEALTH",
    "DURATION_BUCKETS",
    "EVALUATION",
    "RATIO_BUCKETS",
    "RUN_LABELS",
    "Metric",
    "by_otel_name",
    "by_prometheus_name",
    "markdown_table",
]

Kind = Literal["counter", "histogram", "gauge"]

#: Bucket boundaries of duration histograms, in seconds.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip
#: Bucket boundaries of histograms of ratios in [0, 1].
RATIO_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: The labels every run-level metric starts with (docs/conventions.md section 7).
RUN_LABELS: Final = ("pipeline", "segment", "source")
#: Equal-width confidence bins of the calibration counters.
CALIBRATION_BINS: Final = 10


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric as every place shows it.

    ``otel_name`` is the dotted name OTLP carries; ``prometheus_name`` the family
    name as Prometheus shows it (counters without their ``_total`` sample suffix).
    ``labels`` are the label names of every series, in the order they are written.
    """

    otel_name: str
    prometheus_name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    unit: str = ""
    buckets: tuple[float, ...] = ()

    @property
    def sample_name(self) -> str:
        """The name of a sample line: ``..._total`` for counters."""
        return self.prometheus_name + "_total" if self.kind == "counter" else self.prometheus_name


#: The run and stage metrics (docs/conventions.md section 4), in the order they are rendered.
CATALOGUE: Final[tuple[Metric, ...]] = (
    Metric(
        A.METRIC_STAGE_CALLS,
        "llmspans_stage_calls",
        "counter",
        "Stage spans seen: +1 per stage span, in runs and standalone, by status (ok/error); "
        "a span inside a span of the same stage (one call seen twice) counts once.",
        ("pipeline", "stage", "status"),
    ),
    Metric(
        A.METRIC_STAGE_DURATION,
        "llmspans_stage_duration_seconds",
        "histogram",
        "Duration of each stage span.",
        ("pipeline", "stage"),
        unit="s",
        buckets=DURATION_BUCKETS,
    ),
    Metric(
        A.METRIC_TASK_OUTCOMES,
        "llmspans_task_outcomes",
        "counter",
        "Finished pipeline runs: +1 per run, by outcome (success/failure/unverified).",
        (*RUN_LABELS, "outcome"),
    ),
    Metric(
        A.METRIC_TASK_DURATION,
        "llmspans_task_duration_seconds",
        "histogram",
        "End-to-end duration of pipeline runs (the pipeline span), by outcome.",
        (*RUN_LABELS, "outcome"),
        unit="s",
        buckets=DURATION_BUCKETS,
    ),
    Metric(
        A.METRIC_STAGE_FAILURES,
        "llmspans_stage_failures",
        "counter",
        "Root-cause failures: +1 per run with outcome failure, for its root cause only.",
        (*RUN_LABELS, "stage", "reason"),
    ),
    Metric(
        A.METRIC_CONTEXT_PRECISION,
        "llmspans_retrieval_context_precision",
        "histogram",
        "Rank-weighted context precision, per run with relevance labels and retrieved ids, "
        "by basis (labels from the app, judge from an evaluator).",
        (*RUN_LABELS, "basis"),
        buckets=RATIO_BUCKETS,
    ),
    Metric(
        A.METRIC_CONTEXT_RECALL,
        "llmspans_retrieval_context_recall",
        "histogram",
        "Context recall, per run with relevance labels and retrieved ids, by basis (labels: "
        "share of the labelled relevant ids retrieved; judge: 1 when the retrieved context "
        "was judged sufficient, else 0).",
        (*RUN_LABELS, "basis"),
        buckets=RATIO_BUCKETS,
    ),
    Metric(
        A.METRIC_CITATION_PRECISION,
        "llmspans_generation_citation_precision",
        "histogram",
        "Share of a generation's cited ids that the model was shown, per generation "
        "with citations in a run whose shown context is known.",
        RUN_LABELS,
        buckets=RATIO_BUCKETS,
    ),
    Metric(
        A.METRIC_TASK_COST,
        "llmspans_task_cost_usd",
        "counter",
        "Cost in US dollars of pipeline runs: per run, the sum of llmspans.cost.usd "
        "over its spans.",
        (*RUN_LABELS, "outcome"),
    ),
    Metric(
        A.METRIC_FEEDBACK,
        "llmspans_feedback",
        "counter",
        "User feedback events: +1 per feedback span, by kind (accept/edit/bypass/reject).",
        ("pipeline", "kind"),
    ),
    Metric(
        A.METRIC_CALIBRATION_RUNS,
        "llmspans_calibration_runs",
        "counter",
        "Runs with a confidence: +1 per run, by confidence bin and correctness, and the "
        "basis of correctness (labels, outcome, judge).",
        (*RUN_LABELS, "basis", "bin", "correct"),
    ),
    Metric(
        A.METRIC_CALIBRATION_CONFIDENCE,
        "llmspans_calibration_confidence",
        "counter",
        "Sum of the confidences of the runs in each confidence bin, by basis of correctness.",
        (*RUN_LABELS, "basis", "bin"),
    ),
    Metric(
        A.METRIC_CALIBRATION_ECE,
        "llmspans_calibration_ece",
        "gauge",
        "Expected calibration error over the last ece_window runs with a confidence, per pipeline.",
        ("pipeline",),
    ),
)


#: The metrics of continuous evaluation (docs/evaluation.md), measured by
#: :func:`llmspans.core.judging.accumulate_judgment`; rendered after :data:`CATALOGUE`.
EVALUATION: Final[tuple[Metric, ...]] = (
    Metric(
        A.METRIC_CITATION_SUPPORT,
        "llmspans_generation_citation_support",
        "histogram",
        "Share of judged citations whose document supports the claim it is cited for, "
        "per judged generation.",
        RUN_LABELS,
        buckets=RATIO_BUCKETS,
    ),
    Metric(
        A.METRIC_JUDGED_FAILURES,
        "llmspans_judged_failures",
        "counter",
        "Root causes of judged runs that failed once the judged labels are applied: +1 per "
        "judged run that failed, for its root cause only.",
        (*RUN_LABELS, "stage", "reason"),
    ),
    Metric(
        A.METRIC_EVALUATIONS,
        "llmspans_evaluations",
        "counter",
        "Evaluator calls on sampled runs, by verdict (correct, incorrect, judged, error, timeout).",
        ("pipeline", "evaluator", "verdict"),
    ),
    Metric(
        A.METRIC_EVALUATION_COST,
        "llmspans_evaluation_cost_usd",
        "counter",
        "Cost in US dollars of evaluator calls, as the evaluators report it.",
        ("pipeline", "evaluator"),
    ),
    Metric(
        A.METRIC_EVALUATION_DROPPED,
        "llmspans_evaluation_dropped",
        "counter",
        "Sampled runs not evaluated, by reason (queue_full, budget_calls, budget_usd, "
        "shutdown, no_content).",
        ("reason",),
    ),
    Metric(
        A.METRIC_JUDGE_AGREEMENT,
        "llmspans_judge_agreement",
        "counter",
        "Judged facts checked against the app's own labels: +1 per retrieved document "
        "(relevance) and per run (correctness), by agreement.",
        ("evaluator", "aspect", "agree"),
    ),
)


def _health(name: str, kind: Kind, help: str, labels: tuple[str, ...] = ()) -> Metric:
    return Metric("llmspans.collector." + name, "llmspans_collector_" + name, kind, help, labels)


#: The collector's own health metrics, in the order they are rendered.
COLLECTOR_HEALTH: Final[tuple[Metric, ...]] = (
    _health("spans_received", "counter", "Spans that arrived in a decodable request."),
    _health(
        "spans_rejected",
        "counter",
        "Spans refused, by reason (backpressure, invalid ids, auth, size).",
        ("reason",),
    ),
    _health(
        "requests_rejected",
        "counter",
        "Export requests refused as a whole, by reason.",
        ("reason",),
    ),
    _health(
        "late_spans",
        "counter",
        "Spans of already finalised traces: forwarded unchanged, not re-attributed.",
    ),
    _health(
        "traces_evicted",
        "counter",
        "Traces finalised by trace_timeout instead of going idle after their root.",
    ),
    _health(
        "traces_finalized",
        "counter",
        "Traces finalised, by reason (idle, timeout, shutdown).",
        ("reason",),
    ),
    _health("bad_attributes", "counter", "Known attribute values of the wrong type, ignored."),
    _health(
        "labels_truncated",
        "counter",
        "Label values longer than the limit, cut to it.",
    ),
    _health(
        "durations_clamped",
        "counter",
        "Span durations longer than a week (a clock off by years), recorded as a week.",
    ),
    _health(
        "spans_truncated",
        "counter",
        "Spans beyond max_trace_spans of their trace: forwarded, not attributed.",
    ),
    _health(
        "spans_forwarded", "counter", "Spans delivered to an exporter's backend.", ("exporter",)
    ),
    _health(
        "spans_dropped",
        "counter",
        "Spans an exporter gave up on after its retries.",
        ("exporter",),
    ),
    _health("internal_errors", "counter", "Faults inside the collector, by kind.", ("kind",)),
    _health("traces_inflight", "gauge", "Traces being assembled."),
    _health("spans_inflight", "gauge", "Spans held for trace assembly."),
    _health(
        "forward_queue_spans", "gauge", "Spans waiting in an exporter's queue.", ("exporter",)
    ),
    _health(
        "evaluation_queue_runs",
        "gauge",
        "Sampled runs waiting for an evaluator (queued) or being judged (running); "
        "no samples with evaluation off.",
        ("state",),
    ),
    _health(
        "receive_bytes",
        "gauge",
        "Bytes of request bodies being received and decoded (the receive budget).",
    ),
    _health(
        "forward_queue_bytes",
        "gauge",
        "Bytes of serialised spans queued or being sent, per exporter.",
        ("exporter",),
    ),
    _health(
        "inflight_bytes",
        "gauge",
        "Bytes held for trace assembly: each span's share of its request plus its id lists.",
    ),
    _health(
        "memory_limit_bytes",
        "gauge",
        "The byte budgets, by budget (receive, queue, inflight, total).",
        ("budget",),
    ),
    _health("connections", "gauge", "Open connections, per listener.", ("listener",)),
    _health(
        "connections_refused",
        "counter",
        "Connections closed by the collector, by listener and reason "
        "(limit, header_timeout, body_timeout, accept errors).",
        ("listener", "reason"),
    ),
    _health(
        "ids_truncated",
        "counter",
        "List elements (document ids, scores) beyond limits.max_ids_per_span, "
        "ignored by attribution (the span is forwarded whole).",
    ),
)

_BY_OTEL: Final = {
    metric.otel_name: metric for metric in (*CATALOGUE, *EVALUATION, *COLLECTOR_HEALTH)
}
_BY_PROMETHEUS: Final = {
    metric.prometheus_name: metric for metric in (*CATALOGUE, *EVALUATION, *COLLECTOR_HEALTH)
}


def by_otel_name(name: str) -> Metric:
    """The row of a metric by its dotted OTel name (``KeyError`` for an unknown one)."""
    return _BY_OTEL[name]


def by_prometheus_name(name: str) -> Metric:
    """The row of a metric by its Prometheus family name (without ``_total``)."""
    return _BY_PROMETHEUS[name]


def markdown_table(rows: tuple[Metric, ...] = CATALOGUE) -> str:
    """The metric table of ``docs/metrics.md``: Prometheus name, OTel instrument (and
    unit), type, labels, meaning."""
    lines = [
        "| Prometheus name | OTel instrument | type | labels | meaning |",
        "|---|---|---|---|---|",
    ]
    for metric in rows:
        labels = ", ".join(metric.labels) or "none"
        unit = f" ({metric.unit})" if metric.unit else ""
        kind = "histogram 0..1" if metric.buckets is RATIO_BUCKETS else metric.kind
        lines.append(
            f"| `{metric.sample_name if metric.kind == 'counter' else metric.prometheus_name}` "
            f"| `{metric.otel_name}`{unit} | {kind} | {labels} | {metric.help} |"
        )
    return "\n".join(lines) + "\n"
