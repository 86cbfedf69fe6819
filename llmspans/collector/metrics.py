"""The collector's metrics: SPEC section 4 from evaluated traces, plus its own health.

The core's :func:`~llmspans.core.metrics.accumulate` writes each finalised trace's
measurements straight into plain dicts (the core's
:class:`~llmspans.core.metrics.Aggregates`), never through per-span SDK calls.
``/metrics`` renders those dicts on demand, in the Prometheus text format or, when
the scraper asks for it, in OpenMetrics with exemplars that carry the trace id of
the latest trace behind each series (and each histogram bucket), so a spike links
to its traces.
:func:`otlp_request` turns the same dicts into an OTLP metrics export for pushing,
with ``service.instance.id`` on the resource.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from llmspans import _attributes as A
from llmspans.core.metrics import (
    HISTOGRAM_BOUNDARIES,
    Aggregates,
    HistogramData,
    Observation,
    PipelineLabeler,
    accumulate,
    ece,
)
from llmspans.core.model import TraceResult

__all__ = [
    "FAMILIES",
    "HEALTH",
    "MetricsStore",
    "otlp_request",
]

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family as Prometheus shows it."""

    name: str  # without the ``_total`` suffix of counters
    kind: str  # "counter" | "histogram" | "gauge"
    help: str
    otlp_name: str  # the OTel dotted name used on OTLP push


#: SPEC section 4, by OTel instrument name.
FAMILIES: Final[dict[str, Family]] = {
    family.otlp_name: family
    for family in (
        Family("llmspans_stage_calls", "counter", "Stage spans seen.", A.METRIC_STAGE_CALLS),
        Family(
            "llmspans_stage_duration_seconds",
            "histogram",
            "Stage span duration.",
            A.METRIC_STAGE_DURATION,
        ),
        Family(
            "llmspans_task_outcomes",
            "counter",
            "Finished pipeline runs by outcome.",
            A.METRIC_TASK_OUTCOMES,
        ),
        Family(
            "llmspans_task_duration_seconds",
            "histogram",
            "End-to-end pipeline run duration.",
            A.METRIC_TASK_DURATION,
        ),
        Family(
            "llmspans_stage_failures",
            "counter",
            "Root-cause failures: exactly one per run with outcome failure.",
            A.METRIC_STAGE_FAILURES,
        ),
        Family(
            "llmspans_retrieval_context_precision",
            "histogram",
            "Rank-weighted context precision per run with relevance labels.",
            A.METRIC_CONTEXT_PRECISION,
        ),
        Family(
            "llmspans_retrieval_context_recall",
            "histogram",
            "Context recall per run with relevance labels.",
            A.METRIC_CONTEXT_RECALL,
        ),
        Family(
            "llmspans_generation_citation_precision",
            "histogram",
            "Share of citations that point into the selected context.",
            A.METRIC_CITATION_PRECISION,
        ),
        Family(
            "llmspans_task_cost_usd",
            "counter",
            "Cost of pipeline runs in US dollars.",
            A.METRIC_TASK_COST,
        ),
        Family("llmspans_feedback", "counter", "Feedback events.", A.METRIC_FEEDBACK),
        Family(
            "llmspans_calibration_runs",
            "counter",
            "Runs with a confidence, by confidence bin and correctness.",
            A.METRIC_CALIBRATION_RUNS,
        ),
        Family(
            "llmspans_calibration_confidence",
            "counter",
            "Sum of the confidences in the bin.",
            A.METRIC_CALIBRATION_CONFIDENCE,
        ),
        Family(
            "llmspans_calibration_ece",
            "gauge",
            "Expected calibration error over the recent window of runs.",
            A.METRIC_CALIBRATION_ECE,
        ),
    )
}

#: The collector's own health metrics, by Prometheus name (without ``_total``).
HEALTH: Final[dict[str, Family]] = {
    family.name: family
    for family in (
        Family(
            "llmspans_collector_spans_received",
            "counter",
            "Spans that arrived in a decodable request.",
            "llmspans.collector.spans_received",
        ),
        Family(
            "llmspans_collector_spans_rejected",
            "counter",
            "Spans refused, by reason (backpressure, invalid ids, auth, size).",
            "llmspans.collector.spans_rejected",
        ),
        Family(
            "llmspans_collector_requests_rejected",
            "counter",
            "Export requests refused as a whole, by reason.",
            "llmspans.collector.requests_rejected",
        ),
        Family(
            "llmspans_collector_late_spans",
            "counter",
            "Spans of already finalised traces: forwarded unchanged, not re-attributed.",
            "llmspans.collector.late_spans",
        ),
        Family(
            "llmspans_collector_traces_evicted",
            "counter",
            "Traces finalised by trace_timeout instead of going idle after their root.",
            "llmspans.collector.traces_evicted",
        ),
        Family(
            "llmspans_collector_traces_finalized",
            "counter",
            "Traces finalised, by reason (idle, timeout, shutdown).",
            "llmspans.collector.traces_finalized",
        ),
        Family(
            "llmspans_collector_bad_attributes",
            "counter",
            "Known attribute values of the wrong type, ignored.",
            "llmspans.collector.bad_attributes",
        ),
        Family(
            "llmspans_collector_spans_forwarded",
            "counter",
            "Spans delivered to an exporter's backend.",
            "llmspans.collector.spans_forwarded",
        ),
        Family(
            "llmspans_collector_spans_dropped",
            "counter",
            "Spans an exporter gave up on after its retries.",
            "llmspans.collector.spans_dropped",
        ),
        Family(
            "llmspans_collector_internal_errors",
            "counter",
            "Faults inside the collector, by kind.",
            "llmspans.collector.internal_errors",
        ),
        Family(
            "llmspans_collector_traces_inflight",
            "gauge",
            "Traces being assembled.",
            "llmspans.collector.traces_inflight",
        ),
        Family(
            "llmspans_collector_spans_inflight",
            "gauge",
            "Spans held for trace assembly.",
            "llmspans.collector.spans_inflight",
        ),
        Family(
            "llmspans_collector_forward_queue_spans",
            "gauge",
            "Spans waiting in an exporter's queue.",
            "llmspans.collector.forward_queue_spans",
        ),
    )
}

_CALIBRATION: Final = frozenset({A.METRIC_CALIBRATION_RUNS, A.METRIC_CALIBRATION_CONFIDENCE})

#: A gauge callback: the current (labels, value) pairs of one gauge.
GaugeReader = Callable[[], Iterable[tuple[Labels, float]]]


class _StoreSink:
    """The :class:`~llmspans.core.metrics.MetricSink` of a :class:`MetricsStore`: sums,
    histogram buckets, exemplars (stamped with the trace being recorded) and the ECE
    window, in one call per measurement."""

    __slots__ = ("_counters", "_exemplars", "_histograms", "_store", "stamp")

    def __init__(self, store: MetricsStore) -> None:
        self._store = store
        self._counters = store.aggregates.counters
        self._histograms = store.aggregates.histograms
        self._exemplars = store.exemplars
        self.stamp: tuple[str, float] = ("", 0.0)

    def count(self, instrument: str, labels: Labels, value: float) -> None:
        key = (instrument, labels)
        counters = self._counters
        counters[key] = counters.get(key, 0.0) + value
        self._exemplars[key] = (value, self.stamp)
        if instrument in _CALIBRATION:
            self._store._calibrated(instrument, labels, value)

    def observe(self, instrument: str, labels: Labels, value: float) -> None:
        key = (instrument, labels)
        histogram = self._histograms.get(key)
        if histogram is None:
            histogram = self._histograms[key] = HistogramData.empty(
                HISTOGRAM_BOUNDARIES[instrument]
            )
        histogram.add(value)
        self._exemplars[key] = (value, self.stamp)


class MetricsStore:
    """Everything ``/metrics`` shows. Owned by the event loop thread: no locks."""

    def __init__(self, max_pipelines: int = 50, ece_window: int = 1000) -> None:
        self.labeler = PipelineLabeler(max_pipelines)
        self.aggregates = Aggregates()
        self.health: dict[tuple[str, Labels], float] = {}
        self.gauges: dict[str, GaugeReader] = {}
        # (instrument, labels) -> the series' latest observation and (trace id hex,
        # unix time) of its trace: the exemplar of the series (of the bucket the
        # value fell in, for histograms)
        self.exemplars: dict[tuple[str, Labels], tuple[float, tuple[str, float]]] = {}
        self._ece_window = ece_window
        # pipeline label -> recent (confidence, correct) pairs
        self._calibration: dict[str, deque[tuple[float, bool]]] = {}
        self._pending_correct: tuple[str, bool] | None = None
        self._sink = _StoreSink(self)
        self.start_time_ns = time.time_ns()

    # --- recording ---------------------------------------------------------------

    def record(self, result: TraceResult, trace_id: bytes) -> None:
        """Add one finalised trace's measurements; they become exemplars of their series.

        The core's :func:`~llmspans.core.metrics.accumulate` writes straight into the
        :class:`Aggregates` dicts, the exemplar of each series and the (confidence,
        correct) pairs of the ECE window: no intermediate observation objects.
        """
        sink = self._sink
        sink.stamp = (trace_id.hex(), time.time())
        accumulate(result, sink, self.labeler)

    def apply(self, observations: Iterable[Observation], trace_id: bytes) -> None:
        """Add measurements given as observations (same effect as :meth:`record`)."""
        sink = self._sink
        sink.stamp = (trace_id.hex(), time.time())
        for instrument, kind, labels, value in observations:
            if kind == "counter":
                sink.count(instrument, labels, value)
            else:
                sink.observe(instrument, labels, value)

    def _calibrated(self, instrument: str, labels: Labels, value: float) -> None:
        # The core records a run's calibration count (with its correctness) right
        # before its confidence; together they make one (confidence, correct) pair.
        if instrument == A.METRIC_CALIBRATION_RUNS:
            found = dict(labels)
            self._pending_correct = (found.get("pipeline", ""), found.get("correct") == "true")
        elif self._pending_correct is not None:
            pipeline, correct = self._pending_correct
            window = self._calibration.get(pipeline)
            if window is None:
                window = self._calibration[pipeline] = deque(maxlen=self._ece_window)
            window.append((value, correct))
            self._pending_correct = None

    def count(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to one of the collector's health counters (a :data:`HEALTH` name)."""
        key = (name, tuple(sorted(labels.items())))
        self.health[key] = self.health.get(key, 0.0) + value

    def health_value(self, name: str, **labels: str) -> float:
        """Sum of a health counter over the series whose labels include ``labels``."""
        return math.fsum(
            value
            for (series, present), value in self.health.items()
            if series == name and all(dict(present).get(k) == v for k, v in labels.items())
        )

    def ece(self) -> dict[str, float]:
        """ECE per pipeline label over each pipeline's recent window of runs."""
        found: dict[str, float] = {}
        for pipeline, window in self._calibration.items():
            value = ece(window)
            if value is not None:
                found[pipeline] = value
        return found

    # --- Prometheus / OpenMetrics --------------------------------------------------

    def render(self, openmetrics: bool = False) -> str:
        """The text exposition of every metric; OpenMetrics (with exemplars) on request."""
        lines: list[str] = []
        counters: dict[str, list[tuple[Labels, float]]] = {}
        for (instrument, labels), value in self.aggregates.counters.items():
            counters.setdefault(instrument, []).append((labels, value))
        histograms: dict[str, list[tuple[Labels, HistogramData]]] = {}
        for (instrument, labels), data in self.aggregates.histograms.items():
            histograms.setdefault(instrument, []).append((labels, data))
        for instrument, family in FAMILIES.items():
            if family.kind == "counter":
                self._render_counter(
                    lines, family, instrument, counters.get(instrument, ()), openmetrics
                )
            elif family.kind == "histogram":
                self._render_histogram(
                    lines, family, instrument, histograms.get(instrument, ()), openmetrics
                )
            else:
                ece_values = sorted(self.ece().items())
                _header(lines, family, family.name, openmetrics)
                for pipeline, value in ece_values:
                    lines.append(f"{family.name}{_labels((('pipeline', pipeline),))} {_num(value)}")
        health: dict[str, list[tuple[Labels, float]]] = {}
        for (name, labels), value in self.health.items():
            health.setdefault(name, []).append((labels, value))
        for name, family in HEALTH.items():
            if family.kind == "counter":
                self._render_counter(lines, family, None, health.get(name, ()), openmetrics)
            else:
                reader = self.gauges.get(name)
                _header(lines, family, family.name, openmetrics)
                for labels, value in sorted(reader()) if reader is not None else ():
                    lines.append(f"{family.name}{_labels(labels)} {_num(value)}")
        if openmetrics:
            lines.append("# EOF")
        lines.append("")
        return "\n".join(lines)

    def _render_counter(
        self,
        lines: list[str],
        family: Family,
        instrument: str | None,
        series: Iterable[tuple[Labels, float]],
        openmetrics: bool,
    ) -> None:
        sample = family.name + "_total"
        _header(lines, family, family.name if openmetrics else sample, openmetrics)
        for labels, value in sorted(series):
            line = f"{sample}{_labels(labels)} {_num(value)}"
            if openmetrics and instrument is not None:
                exemplar = self.exemplars.get((instrument, labels))
                if exemplar is not None:
                    line += _exemplar(exemplar[0], exemplar[1])
            lines.append(line)

    def _render_histogram(
        self,
        lines: list[str],
        family: Family,
        instrument: str,
        series: Iterable[tuple[Labels, HistogramData]],
        openmetrics: bool,
    ) -> None:
        name = family.name
        _header(lines, family, name, openmetrics)
        for labels, data in sorted(series, key=lambda item: item[0]):
            cumulative = 0
            bounds = [*data.boundaries, math.inf]
            exemplar = self.exemplars.get((instrument, labels)) if openmetrics else None
            exemplar_bucket = (
                -1 if exemplar is None else bisect.bisect_left(data.boundaries, exemplar[0])
            )
            for index, (bound, count) in enumerate(zip(bounds, data.bucket_counts, strict=True)):
                cumulative += count
                line = f"{name}_bucket{_labels((*labels, ('le', _num(bound))))} {cumulative}"
                if exemplar is not None and index == exemplar_bucket:
                    line += _exemplar(exemplar[0], exemplar[1])
                lines.append(line)
            lines.append(f"{name}_count{_labels(labels)} {data.count}")
            lines.append(f"{name}_sum{_labels(labels)} {_num(data.sum)}")


def _header(lines: list[str], family: Family, name: str, openmetrics: bool) -> None:
    lines.append(f"# HELP {name} {family.help}")
    lines.append(f"# TYPE {name} {family.kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _exemplar(value: float, stamp: tuple[str, float]) -> str:
    trace_hex, timestamp = stamp
    return f' # {{trace_id="{trace_hex}"}} {_num(value)} {timestamp:.3f}'


# --- OTLP push -------------------------------------------------------------------------


def _attributes(labels: Labels) -> Iterator[KeyValue]:
    for key, value in labels:
        attribute = KeyValue(key=key)
        attribute.value.string_value = value
        yield attribute


def otlp_request(
    store: MetricsStore, resource: Sequence[tuple[str, str]]
) -> ExportMetricsServiceRequest:
    """The store as one OTLP export: cumulative sums and histograms, gauges, exemplars."""
    now = time.time_ns()
    start = store.start_time_ns
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(_attributes(tuple(resource)))
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = "llmspans.collector"
    cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE

    sums: dict[str, metrics_pb2.Metric] = {}

    def sum_metric(name: str, description: str) -> metrics_pb2.Metric:
        metric = sums.get(name)
        if metric is None:
            metric = scope.metrics.add(name=name, description=description)
            metric.sum.aggregation_temporality = cumulative
            metric.sum.is_monotonic = True
            sums[name] = metric
        return metric

    for (instrument, labels), value in store.aggregates.counters.items():
        family = FAMILIES[instrument]
        point = sum_metric(instrument, family.help).sum.data_points.add(
            start_time_unix_nano=start, time_unix_nano=now, as_double=value
        )
        point.attributes.extend(_attributes(labels))
        exemplar = store.exemplars.get((instrument, labels))
        if exemplar is not None:
            _add_exemplar(point.exemplars.add(), exemplar[0], exemplar[1])
    histograms: dict[str, metrics_pb2.Metric] = {}
    for (instrument, labels), data in store.aggregates.histograms.items():
        metric = histograms.get(instrument)
        if metric is None:
            family = FAMILIES[instrument]
            metric = scope.metrics.add(name=instrument, description=family.help)
            metric.unit = "s" if family.name.endswith("_seconds") else "1"
            metric.histogram.aggregation_temporality = cumulative
            histograms[instrument] = metric
        histogram_point = metric.histogram.data_points.add(
            start_time_unix_nano=start,
            time_unix_nano=now,
            count=data.count,
            sum=data.sum,
            bucket_counts=data.bucket_counts,
            explicit_bounds=data.boundaries,
        )
        histogram_point.attributes.extend(_attributes(labels))
        exemplar = store.exemplars.get((instrument, labels))
        if exemplar is not None:
            _add_exemplar(histogram_point.exemplars.add(), exemplar[0], exemplar[1])
    ece_values = store.ece()
    if ece_values:
        metric = scope.metrics.add(
            name=A.METRIC_CALIBRATION_ECE, description=FAMILIES[A.METRIC_CALIBRATION_ECE].help
        )
        for pipeline, value in sorted(ece_values.items()):
            point = metric.gauge.data_points.add(time_unix_nano=now, as_double=value)
            point.attributes.extend(_attributes((("pipeline", pipeline),)))
    for (name, labels), value in store.health.items():
        family = HEALTH[name]
        point = sum_metric(family.otlp_name, family.help).sum.data_points.add(
            start_time_unix_nano=start, time_unix_nano=now, as_double=value
        )
        point.attributes.extend(_attributes(labels))
    for name, reader in store.gauges.items():
        family = HEALTH[name]
        metric = scope.metrics.add(name=family.otlp_name, description=family.help)
        for labels, value in reader():
            point = metric.gauge.data_points.add(time_unix_nano=now, as_double=value)
            point.attributes.extend(_attributes(labels))
    return request


def _add_exemplar(target: metrics_pb2.Exemplar, value: float, stamp: tuple[str, float]) -> None:
    trace_hex, timestamp = stamp
    target.trace_id = bytes.fromhex(trace_hex)
    target.as_double = value
    target.time_unix_nano = int(timestamp * 1e9)
