"""Fixtures of the library tests: captured spans, clean settings, real OTLP receivers."""

from __future__ import annotations

import gzip
import http.server
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from llmspans import _content
from llmspans._state import STATE
from llmspans.testing import CapturedSpans, assert_context_clean, capture_spans


@pytest.fixture
def spans() -> Iterator[CapturedSpans]:
    with capture_spans() as captured:
        yield captured


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with default settings and must leave no context behind."""
    monkeypatch.delenv(_content.CAPTURE_ENV, raising=False)
    monkeypatch.delenv(_content.MAX_LENGTH_ENV, raising=False)
    STATE.reset()
    yield
    STATE.reset()
    assert_context_clean()


# --- real OTLP receivers on loopback ------------------------------------------------------
class ReceivedSpans:
    """Spans that arrived at a receiver, with their resource attributes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Event()

    def add(
        self, request: trace_service_pb2.ExportTraceServiceRequest, headers: dict[str, str]
    ) -> None:
        with self._lock:
            self.requests.append(request)
            self.headers.append(headers)
        self.arrived.set()

    def spans(self) -> list[tuple[dict[str, Any], trace_pb2.Span]]:
        """(resource attributes, span) for every span received so far."""
        out: list[tuple[dict[str, Any], trace_pb2.Span]] = []
        with self._lock:
            for request in self.requests:
                for resource_spans in request.resource_spans:
                    resource = {
                        kv.key: kv.value.string_value for kv in resource_spans.resource.attributes
                    }
                    for scope_spans in resource_spans.scope_spans:
                        out.extend((resource, span) for span in scope_spans.spans)
        return out


def span_attributes(span: trace_pb2.Span) -> dict[str, Any]:
    """A protobuf span's attributes as plain Python values."""
    out: dict[str, Any] = {}
    for kv in span.attributes:
        value = kv.value
        which = value.WhichOneof("value")
        if which == "array_value":
            items = []
            for item in value.array_value.values:
                item_kind = item.WhichOneof("value")
                items.append(getattr(item, item_kind) if item_kind else None)
            out[kv.key] = tuple(items)
        else:
            out[kv.key] = getattr(value, which) if which else None
    return out


@pytest.fixture
def otlp_http_receiver() -> Iterator[tuple[str, ReceivedSpans]]:
    """An OTLP/HTTP receiver (POST /v1/traces, protobuf) on a free loopback port."""
    received = ReceivedSpans()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            if self.path != "/v1/traces" or (
                self.headers.get("Content-Type") != "application/x-protobuf"
            ):
                self.send_response(404)
                self.end_headers()
                return
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            received.add(request, {k.lower(): v for k, v in self.headers.items()})
            payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def otlp_grpc_receiver() -> Iterator[tuple[str, ReceivedSpans]]:
    """An OTLP/gRPC receiver (TraceService/Export) on a free loopback port."""
    received = ReceivedSpans()

    class Servicer(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(
            self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
        ) -> trace_service_pb2.ExportTraceServiceResponse:
            metadata = dict(context.invocation_metadata())
            received.add(request, metadata)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", received
    finally:
        server.stop(grace=None).wait(timeout=5)
