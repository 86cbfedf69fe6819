"""Embedded mode through the decorators: how the metrics leave the process.

The embedded mode aggregates into the core's store and sends what the collector
sends: an OTLP metrics push (checked here against a real HTTP receiver on loopback:
cumulative sums that grow, histograms with the catalogue's buckets), a ``/metrics``
endpoint, exact totals under concurrent runs, and a push to a dead endpoint that
neither holds the app's exit nor floods the log.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.trace import TracerProvider

import llmspans
from llmspans import _attributes as A
from llmspans._tracing import use_tracer_provider
from llmspans.core.metrics import HISTOGRAM_BOUNDARIES
from llmspans.embedded import EmbeddedProcessor

#: the run labels of a production run of pipeline "support" that names no segment
SUPPORT = (("pipeline", "support"), ("segment", "none"), ("source", "production"))


class MetricsSink:
    """An OTLP/HTTP metrics receiver on loopback; ``status`` is what it answers."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[ExportMetricsServiceRequest] = []
        received = self.requests
        answer = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(ExportMetricsServiceRequest.FromString(body))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/metrics"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Embedded:
    """A provider with the embedded processor pushing to ``sink`` every 0.1 s."""

    def __init__(self, sink: MetricsSink, **options: Any) -> None:
        self.processor = EmbeddedProcessor(
            metrics_endpoint=sink.url,
            push_interval_s=0.1,
            resource=[("service.name", "support-bot")],
            **options,
        )
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.processor)


@pytest.fixture
def sink() -> Iterator[MetricsSink]:
    made = MetricsSink()
    yield made
    made.close()


@pytest.fixture
def embedded(sink: MetricsSink) -> Iterator[Embedded]:
    made = Embedded(sink)
    previous = use_tracer_provider(made.provider)
    try:
        yield made
    finally:
        use_tracer_provider(previous)
        made.provider.shutdown()


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


def _sums(
    request: ExportMetricsServiceRequest, name: str
) -> dict[tuple[tuple[str, str], ...], float]:
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for resource in request.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.sum.data_points:
                        labels = tuple((a.key, a.value.string_value) for a in point.attributes)
                        found[labels] = point.as_double
    return found


def _wait(condition: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_otlp_push_carries_cumulative_sums_and_catalogue_histograms(
    embedded: Embedded, sink: MetricsSink
) -> None:
    for index in range(4):
        _run("q", ok=index != 0)
    _wait(lambda: any(_sums(r, A.METRIC_TASK_OUTCOMES) for r in sink.requests))
    first = next(r for r in sink.requests if _sums(r, A.METRIC_TASK_OUTCOMES))
    for _ in range(3):
        _run("q")
    embedded.processor.force_flush()
    last = sink.requests[-1]
    outcomes = _sums(last, A.METRIC_TASK_OUTCOMES)
    assert outcomes == {
        (*SUPPORT, ("outcome", "success")): 6.0,
        (*SUPPORT, ("outcome", "failure")): 1.0,
    }
    # cumulative: the earlier export's totals are never more than the later one's
    for labels, value in _sums(first, A.METRIC_TASK_OUTCOMES).items():
        assert value <= outcomes[labels]
    resource = {a.key: a.value.string_value for a in last.resource_metrics[0].resource.attributes}
    assert resource["service.name"] == "support-bot"
    metrics = {m.name: m for m in last.resource_metrics[0].scope_metrics[0].metrics}
    durations = metrics[A.METRIC_STAGE_DURATION]
    assert durations.unit == "s"
    for point in durations.histogram.data_points:
        assert tuple(point.explicit_bounds) == HISTOGRAM_BOUNDARIES[A.METRIC_STAGE_DURATION]
        assert sum(point.bucket_counts) == point.count == 7


def test_metrics_endpoint_serves_the_store(sink: MetricsSink) -> None:
    processor = EmbeddedProcessor(metrics_port=0)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    previous = use_tracer_provider(provider)
    try:
        _run("q")
        url = f"http://127.0.0.1:{processor.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        assert (
            'llmspans_task_outcomes_total{pipeline="support",segment="none",source="production",'
            'outcome="success"} 1.0'
        ) in text
        assert text == processor.render()
    finally:
        use_tracer_provider(previous)
        provider.shutdown()
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)  # the endpoint stops with the processor


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
    store = embedded.processor.store
    outcomes = A.METRIC_TASK_OUTCOMES
    assert store.counter(outcomes, outcome=A.OUTCOME_SUCCESS) == threads * runs * 3 / 4
    assert store.counter(outcomes, outcome=A.OUTCOME_FAILURE) == threads * runs / 4
    assert store.counter(A.METRIC_STAGE_CALLS, stage=A.STAGE_RETRIEVAL) == threads * runs
    assert store.counter(A.METRIC_STAGE_CALLS, stage=A.STAGE_GENERATION) == threads * runs
    for stage in (A.STAGE_RETRIEVAL, A.STAGE_GENERATION):
        histogram = store.aggregates.histogram(A.METRIC_STAGE_DURATION, stage=stage)
        assert histogram.count == threads * runs == sum(histogram.bucket_counts)


def test_a_dead_push_endpoint_neither_holds_the_exit_nor_floods_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refusing = MetricsSink(status=404)
    url = refusing.url
    processor = EmbeddedProcessor(metrics_endpoint=url, push_interval_s=0.05)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    previous = use_tracer_provider(provider)
    try:
        with caplog.at_level(logging.WARNING, logger="llmspans"):
            _run("q")
            _wait(lambda: len(refusing.requests) >= 5)
            refusing.close()  # now nothing listens at all
            started = time.monotonic()
            provider.shutdown()
            took = time.monotonic() - started
    finally:
        use_tracer_provider(previous)
    warnings = [
        r.getMessage() for r in caplog.records if "could not push metrics" in r.getMessage()
    ]
    # one line per kind of failure: the 404 (with what to do) and the refused connection
    assert len(warnings) <= 2 and "HTTP Error 404" in warnings[0]
    assert "metrics_port=0" in warnings[0]
    assert took < 10, f"shutdown took {took:.1f} s with a dead metrics endpoint"
