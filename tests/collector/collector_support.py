"""Support of the collector tests: a real collector on loopback, a real OTLP sink.

The collector runs in process on its own event loop thread (so tests can look at
its state) or, for the signal tests, as a subprocess. Senders are the real
OpenTelemetry SDK exporters. Every server binds port 0 or a free port on 127.0.0.1
and is stopped by its fixture.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer
from prometheus_client.parser import text_string_to_metric_families

from llmspans import _attributes as A
from llmspans._attributes import span_name
from llmspans.collector.config import CollectorSettings
from llmspans.collector.service import Collector

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


#: How long a test waits for something that should happen soon. Waits return as soon
#: as the condition holds, so a generous bound costs nothing on a fast machine and
#: absorbs the stalls of a loaded one.
WAIT_S = 60.0


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


class LoopThread:
    """An asyncio event loop on a thread of its own; ``call`` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coroutine: Any, timeout: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def run(self, function: Callable[[], T]) -> T:
        async def wrapper() -> T:
            return function()

        result: T = self.call(wrapper())
        return result

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class Sink:
    """A real OTLP/HTTP trace endpoint that keeps what it receives.

    ``fail_next`` answers that many requests with ``fail_status`` first (and a
    ``Retry-After``), to exercise the collector's retry.
    """

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.requests: list[ExportTraceServiceRequest] = []
        self.metric_requests: list[ExportMetricsServiceRequest] = []
        self.fail_next = 0
        self.fail_status = 503
        self.attempts = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.attempts += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=self.fail_status, headers={"Retry-After": "0"})
        self.requests.append(ExportTraceServiceRequest.FromString(body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _handle_metrics(self, request: web.Request) -> web.Response:
        self.metric_requests.append(ExportMetricsServiceRequest.FromString(await request.read()))
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def start(self) -> None:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._handle)
        app.router.add_post("/v1/metrics", self._handle_metrics)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    def spans(self) -> list[Span]:
        def collect() -> list[Span]:
            return [
                span
                for request in self.requests
                for resource_spans in request.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]

        return self.loop.run(collect)


def attributes(span: Span) -> dict[str, Any]:
    """A protobuf span's attributes as plain Python values."""
    found: dict[str, Any] = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        if which == "array_value":
            found[kv.key] = [
                getattr(item, item.WhichOneof("value")) for item in kv.value.array_value.values
            ]
        elif which is not None:
            found[kv.key] = getattr(kv.value, which)
    return found


class ManualClock:
    """A monotonic clock for the collector's assembly that the test moves by hand."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class RunningCollector:
    """A collector started in process; its servers live on ``loop``."""

    def __init__(self, loop: LoopThread, settings: CollectorSettings) -> None:
        self.loop = loop
        self.settings = settings
        self.collector = Collector(settings)
        loop.call(self.collector.start())
        assert self.collector.grpc is not None or settings.receivers.grpc is None
        self.stopped = False

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.http_port}/v1/traces"

    @property
    def grpc_endpoint(self) -> str:
        assert self.collector.grpc is not None
        return f"127.0.0.1:{self.collector.grpc.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.collector.metrics_port}"

    def scrape(self, openmetrics: bool = False) -> str:
        request = urllib.request.Request(self.metrics_url + "/metrics")
        if openmetrics:
            request.add_header("Accept", "application/openmetrics-text; version=1.0.0")
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
            return body.decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples called ``name`` whose labels include ``labels`` (parsed
        with prometheus_client's own parser, so the exposition format is checked too)."""
        total = 0.0
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def state(self, function: Callable[[Collector], T]) -> T:
        return self.loop.run(lambda: function(self.collector))

    def freeze_clock(self) -> ManualClock:
        """Put the assembly on a clock that moves only when the test says so.

        Idle and timeout finalisation then happen at instants the test chooses, so
        a test can look at a trace in flight without racing its finalisation.
        """
        clock = ManualClock(time.monotonic())

        def install(collector: Collector) -> None:
            collector.processor.clock = clock

        self.state(install)
        return clock

    def sweep(self) -> None:
        """One sweep of the assembly, on the collector's loop, at its clock's time."""
        self.state(lambda collector: collector.processor.sweep())

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.loop.call(self.collector.stop(), timeout=60)


def base_settings(**overrides: Any) -> CollectorSettings:
    """Settings with every server on a free loopback port and quick assembly."""
    data: dict[str, Any] = {
        "receivers": {
            "grpc": {"endpoint": "127.0.0.1:0"},
            "http": {"endpoint": "127.0.0.1:0"},
        },
        "metrics": {"prometheus": {"endpoint": "127.0.0.1:0"}},
        "assembly": {"trace_idle_s": 0.3, "trace_timeout_s": 10.0, "sweep_interval_s": 0.05},
        "exporters": [],
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return CollectorSettings(**data)


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def sink(loop_thread: LoopThread) -> Iterator[Sink]:
    server = Sink(loop_thread)
    loop_thread.call(server.start())
    yield server
    loop_thread.call(server.stop())


@pytest.fixture
def start_collector(
    loop_thread: LoopThread,
) -> Iterator[Callable[..., RunningCollector]]:
    started: list[RunningCollector] = []

    def start(**overrides: Any) -> RunningCollector:
        running = RunningCollector(loop_thread, base_settings(**overrides))
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


# --- senders: the real SDK exporters ----------------------------------------------------


class Sender:
    """A TracerProvider exporting every span at its end through one OTLP exporter."""

    def __init__(
        self, exporter: Any, service: str = "rag-app", resource: dict[str, str] | None = None
    ) -> None:
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service, **(resource or {})})
        )
        self.provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("tests.collector")

    def close(self) -> None:
        self.provider.shutdown()


def http_sender(url: str, resource: dict[str, str] | None = None, **kwargs: Any) -> Sender:
    return Sender(HttpSpanExporter(endpoint=url, **kwargs), resource=resource)


def grpc_sender(endpoint: str, resource: dict[str, str] | None = None, **kwargs: Any) -> Sender:
    return Sender(GrpcSpanExporter(endpoint=endpoint, insecure=True, **kwargs), resource=resource)


def emit_run(
    tracer: Tracer,
    pipeline: str = "rag",
    *,
    documents: tuple[str, ...] = ("d1", "d2", "d3"),
    relevant: tuple[str, ...] | None = None,
    selected: tuple[str, ...] | None = ("d1", "d2"),
    citations: tuple[str, ...] = ("d1",),
    confidence: float | None = None,
    verified: bool | None = True,
    retrieval_error: bool = False,
    cost: float = 0.0,
    correct: bool | None = None,
) -> bytes:
    """One pipeline run the way the decorators write it; returns its trace id."""
    with tracer.start_as_current_span(
        span_name(A.STAGE_PIPELINE, pipeline),
        attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: pipeline},
    ) as root:
        if correct is not None:
            root.set_attribute(A.TASK_CORRECT, correct)
        common = {A.PIPELINE: pipeline}
        with tracer.start_as_current_span(
            span_name(A.STAGE_RETRIEVAL, "faq"),
            kind=SpanKind.CLIENT,
            attributes={**common, A.STAGE: A.STAGE_RETRIEVAL, A.RETRIEVAL_DOCUMENT_IDS: documents},
        ) as retrieval:
            if relevant is not None:
                retrieval.set_attribute(A.RETRIEVAL_RELEVANT_IDS, relevant)
            if retrieval_error:
                retrieval.set_status(Status(StatusCode.ERROR, "index down"))
        if selected is not None:
            with tracer.start_as_current_span(
                span_name(A.STAGE_CONTEXT_SELECTION, "top2"),
                attributes={
                    **common,
                    A.STAGE: A.STAGE_CONTEXT_SELECTION,
                    A.CONTEXT_INPUT_IDS: documents,
                    A.CONTEXT_SELECTED_IDS: selected,
                },
            ):
                pass
        generation_attributes: dict[str, Any] = {
            **common,
            A.STAGE: A.STAGE_GENERATION,
            A.GENERATION_CITATIONS: citations,
            A.COST_USD: cost,
        }
        if confidence is not None:
            generation_attributes[A.GENERATION_CONFIDENCE] = confidence
        with tracer.start_as_current_span(
            span_name(A.STAGE_GENERATION, "gpt-4o"),
            kind=SpanKind.CLIENT,
            attributes=generation_attributes,
        ):
            pass
        if verified is not None:
            with tracer.start_as_current_span(
                span_name(A.STAGE_ACTION, "send_email"),
                attributes={**common, A.STAGE: A.STAGE_ACTION, A.ACTION_VERIFIED: verified},
            ):
                pass
        trace_id: int = root.get_span_context().trace_id
    return trace_id.to_bytes(16, "big")


@pytest.fixture
def tmp_file(tmp_path: Path) -> Callable[[str], Path]:
    def make(name: str) -> Path:
        return tmp_path / name

    return make
