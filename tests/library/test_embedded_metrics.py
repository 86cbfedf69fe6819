"""Embedded mode through the decorators: how the metrics reach the MeterProvider.

The counters are observable counters over totals the processor keeps; these tests
check that what a reader sees is exactly what synchronous counters would give:
cumulative sums, correct deltas for a delta-temporality reader, exact totals under
concurrent runs, and histograms that stay real histograms.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import (
    Counter,
    Histogram,
    MeterProvider,
    ObservableCounter,
)
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
    Sum,
)
from opentelemetry.sdk.metrics.export import (
    Histogram as HistogramData,
)
from opentelemetry.sdk.trace import TracerProvider

import llmspans
from llmspans import _attributes as A
from llmspans._tracing import use_tracer_provider
from llmspans.core.metrics import HISTOGRAM_BOUNDARIES
from llmspans.embedded import EmbeddedProcessor

_DELTA = {
    Counter: AggregationTemporality.DELTA,
    ObservableCounter: AggregationTemporality.DELTA,
    Histogram: AggregationTemporality.DELTA,
}


class Embedded:
    """A provider with the embedded processor; a cumulative and a delta reader."""

    def __init__(self) -> None:
        self.cumulative = InMemoryMetricReader()
        self.delta = InMemoryMetricReader(preferred_temporality=_DELTA)  # type: ignore[arg-type]
        self.meters = MeterProvider(metric_readers=[self.cumulative, self.delta])
        self.processor = EmbeddedProcessor(meter_provider=self.meters)
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)


@pytest.fixture
def embedded() -> Iterator[Embedded]:
    made = Embedded()
    previous = use_tracer_provider(made.provider)
    try:
        yield made
    finally:
        use_tracer_provider(previous)
        made.provider.shutdown()
        made.meters.shutdown()


@llmspans.retrieval("faq")
def _search(query: str) -> list[dict[str, Any]]:
    return [{"id": f"doc-{index}", "score": 0.9 - index / 10} for index in range(3)]


@llmspans.generation("gpt-4o-mini", provider="openai")
def _answer(question: str) -> str:
    llmspans.record_generation(input_tokens=100, output_tokens=20, citations=["doc-1"])
    return "answer"


@llmspans.pipeline("support")
def _run(question: str, *, ok: bool = True) -> str:
    _search(question)
    answer = _answer(question)
    llmspans.set_outcome(completed=ok)
    return answer


def _collect(reader: InMemoryMetricReader) -> dict[str, tuple[Any, list[Any]]]:
    """One collection: every metric's data and points by name."""
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: (metric.data, list(metric.data.data_points))
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def _points(reader: InMemoryMetricReader, name: str) -> tuple[Any, list[Any]]:
    return _collect(reader).get(name, (None, []))


def _value(points: list[Any], **labels: str) -> float:
    total = 0.0
    for point in points:
        attributes = dict(point.attributes or {})
        if all(attributes.get(key) == value for key, value in labels.items()):
            assert isinstance(point, NumberDataPoint)
            total += point.value
    return total


def test_counters_are_cumulative_monotonic_sums(embedded: Embedded) -> None:
    for _ in range(3):
        _run("q")
    _run("q", ok=False)
    data, points = _points(embedded.cumulative, A.METRIC_TASK_OUTCOMES)
    assert isinstance(data, Sum)
    assert data.is_monotonic
    assert data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert _value(points, pipeline="support", outcome=A.OUTCOME_SUCCESS) == 3
    assert _value(points, pipeline="support", outcome=A.OUTCOME_FAILURE) == 1
    _, calls = _points(embedded.cumulative, A.METRIC_STAGE_CALLS)
    assert _value(calls, pipeline="support", stage=A.STAGE_RETRIEVAL, status="ok") == 4
    assert _value(calls, pipeline="support", stage=A.STAGE_GENERATION, status="ok") == 4
    _, cost = _points(embedded.cumulative, A.METRIC_TASK_COST)
    assert _value(cost, pipeline="support") > 0


def test_delta_reader_sees_what_happened_since_its_last_collection(embedded: Embedded) -> None:
    for _ in range(3):
        _run("q")
    data, first = _points(embedded.delta, A.METRIC_TASK_OUTCOMES)
    assert data.aggregation_temporality is AggregationTemporality.DELTA
    assert _value(first, outcome=A.OUTCOME_SUCCESS) == 3
    for _ in range(2):
        _run("q")
    collected = _collect(embedded.delta)
    assert _value(collected[A.METRIC_TASK_OUTCOMES][1], outcome=A.OUTCOME_SUCCESS) == 2
    assert sum(point.count for point in collected[A.METRIC_TASK_DURATION][1]) == 2
    # Nothing happened since: the next delta collection reports no new runs.
    _, third = _points(embedded.delta, A.METRIC_TASK_OUTCOMES)
    assert _value(third, outcome=A.OUTCOME_SUCCESS) == 0
    # The cumulative reader on the same provider still sees the total.
    _, total = _points(embedded.cumulative, A.METRIC_TASK_OUTCOMES)
    assert _value(total, outcome=A.OUTCOME_SUCCESS) == 5


def test_concurrent_runs_are_counted_exactly(embedded: Embedded) -> None:
    threads, runs = 8, 40
    start = threading.Barrier(threads)

    def work() -> None:
        start.wait()
        for index in range(runs):
            _run("q", ok=index % 4 != 0)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    _, outcomes = _points(embedded.cumulative, A.METRIC_TASK_OUTCOMES)
    assert _value(outcomes, outcome=A.OUTCOME_SUCCESS) == threads * runs * 3 / 4
    assert _value(outcomes, outcome=A.OUTCOME_FAILURE) == threads * runs / 4
    _, calls = _points(embedded.cumulative, A.METRIC_STAGE_CALLS)
    assert _value(calls, stage=A.STAGE_RETRIEVAL) == threads * runs
    assert _value(calls, stage=A.STAGE_GENERATION) == threads * runs
    data, durations = _points(embedded.cumulative, A.METRIC_STAGE_DURATION)
    assert isinstance(data, HistogramData)
    by_stage = {dict(point.attributes)["stage"]: point for point in durations}
    for stage in (A.STAGE_RETRIEVAL, A.STAGE_GENERATION):
        point = by_stage[stage]
        assert isinstance(point, HistogramDataPoint)
        assert point.count == threads * runs
        assert tuple(point.explicit_bounds) == HISTOGRAM_BOUNDARIES[A.METRIC_STAGE_DURATION]
        assert sum(point.bucket_counts) == point.count
