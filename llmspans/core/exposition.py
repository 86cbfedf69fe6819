"""A :class:`~llmspans.core.store.MetricStore` as Prometheus text and as an OTLP export.

Both are built from the rows of :mod:`llmspans.core.catalogue`, so the collector
and the embedded mode show the same families, help texts and label sets. The text
is the Prometheus exposition format or, when the scraper asks for it, OpenMetrics
with exemplars that carry the trace id of the latest trace behind each series (and
each histogram bucket), so a spike links to its traces. Pure: the caller serves or
sends the result.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from llmspans import _attributes as A
from llmspans.core.catalogue import CATALOGUE, EVALUATION, Metric, by_otel_name
from llmspans.core.metrics import HistogramData, Labels
from llmspans.core.store import MetricStore, Stamp

__all__ = ["OPENMETRICS_CONTENT_TYPE", "PROMETHEUS_CONTENT_TYPE", "otlp_request", "render"]

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def render(store: MetricStore, health: Sequence[Metric] = (), openmetrics: bool = False) -> str:
    """The text exposition of every catalogue metric and of the ``health`` rows."""
    lines: list[str] = []
    counters: dict[str, list[tuple[Labels, float]]] = {}
    for (instrument, labels), value in store.aggregates.counters.items():
        counters.setdefault(instrument, []).append((labels, value))
    histograms: dict[str, list[tuple[Labels, HistogramData]]] = {}
    for (instrument, labels), data in store.aggregates.histograms.items():
        histograms.setdefault(instrument, []).append((labels, data))
    # Evaluation families appear once something was judged (docs/evaluation.md).
    judged = [row for row in EVALUATION if row.otel_name in counters or row.otel_name in histograms]
    for metric in (*CATALOGUE, *judged):
        name = metric.otel_name
        if metric.kind == "counter":
            _counter(lines, store, metric, name, counters.get(name, ()), openmetrics)
        elif metric.kind == "histogram":
            _histogram(lines, store, metric, histograms.get(name, ()), openmetrics)
        else:
            _header(lines, metric, metric.prometheus_name)
            for pipeline, value in sorted(store.ece().items()):
                lines.append(f"{metric.prometheus_name}{_labels((('pipeline', pipeline),))} "
                             f"{_num(value)}")  # fmt: skip
    health_series: dict[str, list[tuple[Labels, float]]] = {}
    for (name, labels), value in store.health.items():
        health_series.setdefault(name, []).append((labels, value))
    for metric in health:
        if metric.kind == "counter":
            series = health_series.get(metric.prometheus_name, ())
            _counter(lines, store, metric, None, series, openmetrics)
        else:
            reader = store.gauges.get(metric.prometheus_name)
            _header(lines, metric, metric.prometheus_name)
            for labels, value in sorted(reader()) if reader is not None else ():
                lines.append(f"{metric.prometheus_name}{_labels(labels)} {_num(value)}")
    if openmetrics:
        lines.append("# EOF")
    lines.append("")
    return "\n".join(lines)


def _counter(  # noqa: PLR0917 - one private renderer, called twice above
    lines: list[str],
    store: MetricStore,
    metric: Metric,
    instrument: str | None,
    series: Iterable[tuple[Labels, float]],
    openmetrics: bool,
) -> None:
    sample = metric.sample_name
    _header(lines, metric, metric.prometheus_name if openmetrics else sample)
    for labels, value in sorted(series):
        line = f"{sample}{_labels(labels)} {_num(value)}"
        if openmetrics and instrument is not None:
            exemplar = store.exemplars.get((instrument, labels))
            if exemplar is not None:
                line += _exemplar(exemplar[0], exemplar[1])
        lines.append(line)


def _histogram(
    lines: list[str],
    store: MetricStore,
    metric: Metric,
    series: Iterable[tuple[Labels, HistogramData]],
    openmetrics: bool,
) -> None:
    name = metric.prometheus_name
    _header(lines, metric, name)
    for labels, data in sorted(series, key=lambda item: item[0]):
        cumulative = 0
        text = _labels(labels)
        # the series' labels rendered once, each bucket's ``le`` appended to them
        bucket = f"{name}_bucket{text[:-1]}," if text else f"{name}_bucket{{"
        exemplar = store.exemplars.get((metric.otel_name, labels)) if openmetrics else None
        exemplar_bucket = (
            -1 if exemplar is None else bisect.bisect_left(data.boundaries, exemplar[0])
        )
        for index, (le, count) in enumerate(
            zip(_le_texts(data.boundaries), data.bucket_counts, strict=True)
        ):
            cumulative += count
            line = f"{bucket}{le}}} {cumulative}"
            if exemplar is not None and index == exemplar_bucket:
                line += _exemplar(exemplar[0], exemplar[1])
            lines.append(line)
        lines.append(f"{name}_count{text} {data.count}")
        lines.append(f"{name}_sum{text} {_num(data.sum)}")


def _header(lines: list[str], metric: Metric, name: str) -> None:
    lines.append(f"# HELP {name} {metric.help}")
    lines.append(f"# TYPE {name} {metric.kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


#: Label sets as rendered, kept across scrapes: the same series are written at
#: every scrape, and escaping each value again was most of a scrape's work. The
#: series are bounded by the label caps; the memo starts over when it is full.
_LABEL_TEXTS: dict[Labels, str] = {}
_MAX_LABEL_TEXTS: Final = 1 << 16
#: ``le="..."`` of each bucket bound (and ``+Inf``), per boundaries tuple
_LE_TEXTS: dict[tuple[float, ...], tuple[str, ...]] = {}


def _labels(labels: Labels) -> str:
    text = _LABEL_TEXTS.get(labels)
    if text is None:
        text = (
            "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels) + "}"
            if labels
            else ""
        )
        if len(_LABEL_TEXTS) >= _MAX_LABEL_TEXTS:
            _LABEL_TEXTS.clear()
        _LABEL_TEXTS[labels] = text
    return text


def _le_texts(boundaries: tuple[float, ...]) -> tuple[str, ...]:
    texts = _LE_TEXTS.get(boundaries)
    if texts is None:
        texts = tuple(f'le="{_num(bound)}"' for bound in (*boundaries, math.inf))
        if len(_LE_TEXTS) < 64:
            _LE_TEXTS[boundaries] = texts
    return texts


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value))


def _exemplar(value: float, stamp: Stamp) -> str:
    trace_hex, timestamp = stamp
    return f' # {{trace_id="{trace_hex}"}} {_num(value)} {timestamp:.3f}'


# --- OTLP ------------------------------------------------------------------------------


def _attributes(labels: Labels) -> Iterator[KeyValue]:
    for key, value in labels:
        attribute = KeyValue(key=key)
        attribute.value.string_value = value
        yield attribute


def otlp_request(
    store: MetricStore,
    resource: Sequence[tuple[str, str]],
    health: Sequence[Metric] = (),
    scope_name: str = "llmspans",
) -> ExportMetricsServiceRequest:
    """The store as one OTLP export: cumulative sums and histograms, gauges, exemplars.

    Every metric carries its catalogue name, help and unit; ``health`` rows add the
    host's own counters and gauges.
    """
    now = time.time_ns()
    start = store.start_time_ns
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(_attributes(tuple(resource)))
    scope = resource_metrics.scope_metrics.add()
    scope.scope.name = scope_name
    cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE

    made: dict[str, metrics_pb2.Metric] = {}

    def metric_of(row: Metric) -> metrics_pb2.Metric:
        metric = made.get(row.otel_name)
        if metric is None:
            metric = scope.metrics.add(name=row.otel_name, description=row.help, unit=row.unit)
            if row.kind == "counter":
                metric.sum.aggregation_temporality = cumulative
                metric.sum.is_monotonic = True
            elif row.kind == "histogram":
                metric.histogram.aggregation_temporality = cumulative
            made[row.otel_name] = metric
        return metric

    for (instrument, labels), value in store.aggregates.counters.items():
        point = metric_of(by_otel_name(instrument)).sum.data_points.add(
            start_time_unix_nano=start, time_unix_nano=now, as_double=value
        )
        point.attributes.extend(_attributes(labels))
        exemplar = store.exemplars.get((instrument, labels))
        if exemplar is not None:
            _add_exemplar(point.exemplars.add(), exemplar[0], exemplar[1])
    for (instrument, labels), data in store.aggregates.histograms.items():
        histogram_point = metric_of(by_otel_name(instrument)).histogram.data_points.add(
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
        metric = metric_of(by_otel_name(A.METRIC_CALIBRATION_ECE))
        for pipeline, value in sorted(ece_values.items()):
            point = metric.gauge.data_points.add(time_unix_nano=now, as_double=value)
            point.attributes.extend(_attributes((("pipeline", pipeline),)))
    by_family = {row.prometheus_name: row for row in health}
    for (name, labels), value in store.health.items():
        row = by_family.get(name)
        if row is None:
            continue
        point = metric_of(row).sum.data_points.add(
            start_time_unix_nano=start, time_unix_nano=now, as_double=value
        )
        point.attributes.extend(_attributes(labels))
    for name, reader in store.gauges.items():
        row = by_family.get(name)
        if row is None:
            continue
        metric = metric_of(row)
        for labels, value in reader():
            point = metric.gauge.data_points.add(time_unix_nano=now, as_double=value)
            point.attributes.extend(_attributes(labels))
    return request


def _add_exemplar(target: metrics_pb2.Exemplar, value: float, stamp: Stamp) -> None:
    trace_hex, timestamp = stamp
    target.trace_id = bytes.fromhex(trace_hex)
    target.as_double = value
    target.time_unix_nano = int(timestamp * 1e9)
