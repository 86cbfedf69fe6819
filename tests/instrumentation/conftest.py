"""Fixtures of the auto-instrumentation tests.

Every instrumentor is enabled for this package's tests (and only for them: other
areas' tests run uninstrumented) against one SDK TracerProvider
with an in-memory exporter; each test starts from an empty exporter. Model
providers are a loopback HTTP server answering like their APIs
(``fake_providers``); chromadb and qdrant run in process.
"""

from __future__ import annotations

import os

# LiteLLM fetches its price map from the network on import unless told not to.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as attr
from llmspans._context import STAGE_KEY, Stage
from llmspans._tracing import use_tracer_provider
from llmspans.instrumentation import instrument, uninstrument

from .fake_providers import FakeProviderServer

_EXPORTER = InMemorySpanExporter()
_PROVIDER = TracerProvider()
_PROVIDER.add_span_processor(SimpleSpanProcessor(_EXPORTER))
# Delta temporality: each collection holds what was recorded since the one before.
_METRIC_READER = InMemoryMetricReader(
    preferred_temporality={Histogram: AggregationTemporality.DELTA}
)
_METER_PROVIDER = MeterProvider(metric_readers=[_METRIC_READER])


@pytest.fixture(scope="package", autouse=True)
def _instrumented() -> Iterator[list[str]]:
    enabled = instrument(tracer_provider=_PROVIDER, meter_provider=_METER_PROVIDER)
    yield enabled
    uninstrument()


@pytest.fixture
def provider() -> TracerProvider:
    return _PROVIDER


@pytest.fixture
def metric_reader() -> InMemoryMetricReader:
    """The reader of the client metrics, emptied of what earlier tests recorded."""
    _METRIC_READER.get_metrics_data()
    return _METRIC_READER


@pytest.fixture
def library_provider(provider: TracerProvider) -> Iterator[None]:
    """The library's own decorators trace through ``provider`` for one test."""
    previous = use_tracer_provider(provider)
    yield
    use_tracer_provider(previous)


@pytest.fixture
def spans() -> Iterator[Spans]:
    _EXPORTER.clear()
    yield Spans(_EXPORTER)
    _EXPORTER.clear()


@pytest.fixture
def capture_content() -> Iterator[None]:
    """Content capture on for one test (it is off by default)."""
    from llmspans import _content

    _content.set_capture(True)
    yield
    _content.set_capture(None)


@pytest.fixture(scope="package")
def fake_server() -> Iterator[FakeProviderServer]:
    server = FakeProviderServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(fake_server: FakeProviderServer) -> FakeProviderServer:
    with fake_server.lock:
        fake_server.requests.clear()
    return fake_server


class Spans:
    """Finished spans of the current test."""

    def __init__(self, exporter: InMemorySpanExporter) -> None:
        self._exporter = exporter

    def all(self) -> list[ReadableSpan]:
        return list(self._exporter.get_finished_spans())

    def names(self) -> list[str]:
        return [span.name for span in self.all()]

    def one(self, name: str | None = None) -> ReadableSpan:
        found = [s for s in self.all() if name is None or s.name == name]
        assert len(found) == 1, f"expected one span {name!r}, got {[s.name for s in self.all()]}"
        return found[0]

    def attributes(self, name: str | None = None) -> dict[str, Any]:
        return {k: _plain(v) for k, v in (self.one(name).attributes or {}).items()}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@contextmanager
def decorated_stage(stage: str, name: str, *, pipeline: str | None = None) -> Iterator[trace.Span]:
    """A stage span with its ``Stage`` in the context (``llmspans._context``), writing
    what it is told at once."""
    tracer = _PROVIDER.get_tracer("test-app")
    with tracer.start_as_current_span(attr.span_name(stage, name)) as span:
        span.set_attribute(attr.STAGE, stage)
        token = otel_context.attach(otel_context.set_value(STAGE_KEY, Stage(stage, span, pipeline)))
        try:
            yield span
        finally:
            otel_context.detach(token)


@contextmanager
def pipeline_root(name: str) -> Iterator[trace.Span]:
    """A pipeline root span with the pipeline name in the context, as ``@pipeline`` does."""
    tracer = _PROVIDER.get_tracer("test-app")
    with tracer.start_as_current_span(attr.span_name(attr.STAGE_PIPELINE, name)) as span:
        span.set_attribute(attr.STAGE, attr.STAGE_PIPELINE)
        root = Stage(attr.STAGE_PIPELINE, span, name, span)
        token = otel_context.attach(otel_context.set_value(STAGE_KEY, root))
        try:
            yield span
        finally:
            otel_context.detach(token)
