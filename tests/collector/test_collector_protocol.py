"""The OTLP protocol edges: encodings, bad input, limits, backpressure, auth."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from collector_support import (
    RunningCollector,
    Sink,
    emit_run,
    grpc_sender,
    http_sender,
    wait_until,
)
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from llmspans import _attributes as A

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def post(
    url: str, body: bytes, content_type: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": content_type, **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def json_run(trace_hex: str = "5b8efff798038103d269b633813fc60c") -> dict[str, Any]:
    """A pipeline run in OTLP JSON with the encoding's quirks: hex ids, integer enums,
    int64 values as strings, lowerCamelCase keys."""

    def span(span_id: str, parent: str, name: str, stage: str, extra: list[Any]) -> Any:
        return {
            "traceId": trace_hex,
            "spanId": span_id,
            "parentSpanId": parent,
            "name": name,
            "kind": 3 if stage == "retrieval" else 1,
            "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000250000000",
            "attributes": [
                {"key": A.STAGE, "value": {"stringValue": stage}},
                {"key": A.PIPELINE, "value": {"stringValue": "json"}},
                *extra,
            ],
            "status": {"code": 2} if stage == "retrieval" else {},
        }

    ids = {
        "key": A.RETRIEVAL_DOCUMENT_IDS,
        "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}},
    }
    top_k = {"key": A.GEN_AI_REQUEST_TOP_K, "value": {"intValue": "2"}}
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            span("eee19b7ec3c1b174", "", "invoke_workflow json", "pipeline", []),
                            span(
                                "0102030405060708",
                                "eee19b7ec3c1b174",
                                "retrieval faq",
                                "retrieval",
                                [ids, top_k],
                            ),
                        ],
                    }
                ],
            }
        ]
    }


def test_json_quirks_are_understood(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    status, headers, body = post(collector.http_url, json.dumps(json_run()).encode(), JSON)
    assert status == 200, body
    assert headers["Content-Type"].startswith(JSON)
    assert json.loads(body) == {}
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1)
    # status code 2 (an integer enum) is ERROR: the retrieval is the root cause
    assert collector.metric("llmspans_stage_failures_total", stage="retrieval", reason="error") == 1
    assert collector.metric("llmspans_stage_duration_seconds_sum", stage="retrieval") == 0.25
    wait_until(lambda: len(sink.spans()) == 2)
    spans = {span.name: span for span in sink.spans()}
    retrieval = spans["retrieval faq"]
    assert retrieval.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert retrieval.parent_span_id.hex() == "eee19b7ec3c1b174"
    assert retrieval.kind == 3
    assert retrieval.start_time_unix_nano == 1700000000000000000
    top_k = next(kv for kv in retrieval.attributes if kv.key == A.GEN_AI_REQUEST_TOP_K)
    assert top_k.value.int_value == 2


def test_gzip_bodies_are_accepted(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector()
    body = gzip.compress(json.dumps(json_run()).encode())
    status, _, payload = post(collector.http_url, body, JSON, {"Content-Encoding": "gzip"})
    assert status == 200, payload
    sender = http_sender(collector.http_url, compression=_gzip_compression())
    emit_run(sender.tracer)
    sender.close()
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 2)


def _gzip_compression() -> Any:
    from opentelemetry.exporter.otlp.proto.http import Compression

    return Compression.Gzip


def test_partial_success_for_invalid_ids(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    document = json_run()
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = json.loads(json.dumps(spans[1]))
    bad["spanId"] = "not-hex!"
    bad["name"] = "bad one"
    spans.append(bad)
    status, _, body = post(collector.http_url, json.dumps(document).encode(), JSON)
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert "bad one" in partial["errorMessage"] and "span id" in partial["errorMessage"]

    # The same over protobuf: a 3-byte trace id is refused, its neighbours kept.
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.add(trace_id=bytes(range(1, 17)), span_id=b"\x01" * 8, name="fine")
    scope.spans.add(trace_id=b"abc", span_id=b"\x02" * 8, name="short id")
    status, _, body = post(collector.http_url, request.SerializeToString(), PROTOBUF)
    assert status == 200
    response = ExportTraceServiceResponse.FromString(body)
    assert response.partial_success.rejected_spans == 1
    assert "short id" in response.partial_success.error_message

    # ... and over gRPC, where partial success travels in the response message.
    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda body: body,
        response_deserializer=ExportTraceServiceResponse.FromString,
    )
    scope.spans[0].trace_id = bytes(range(2, 18))
    scope.spans[1].span_id = bytes(8)
    scope.spans[1].name = "zero span id"
    response = export(request.SerializeToString(), timeout=5)
    channel.close()
    assert response.partial_success.rejected_spans == 1
    assert "zero span id" in response.partial_success.error_message

    assert collector.metric("llmspans_collector_spans_rejected_total", reason="invalid_id") == 3
    wait_until(lambda: len(sink.spans()) == 4)
    assert sorted(span.name for span in sink.spans()) == [
        "fine",
        "fine",
        "invoke_workflow json",
        "retrieval faq",
    ]


def test_wrong_attribute_types_are_reported_not_fatal(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    document = json_run()
    retrieval = document["resourceSpans"][0]["scopeSpans"][0]["spans"][1]
    retrieval["attributes"].append({"key": A.RETRIEVAL_SCORES, "value": {"stringValue": "high"}})
    status, _, body = post(collector.http_url, json.dumps(document).encode(), JSON)
    assert status == 200
    partial = json.loads(body)["partialSuccess"]
    assert "rejectedSpans" not in partial
    assert "wrong type" in partial["errorMessage"]
    assert collector.metric("llmspans_collector_bad_attributes_total") == 1
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1)


BAD_TIMESTAMP = json.dumps(
    {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "startTimeUnixNano": "soon",
                            }
                        ]
                    }
                ]
            }
        ]
    }
).encode()


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"\xff\xff\xff\xff", PROTOBUF, "malformed OTLP protobuf"),
        (b"{not json", JSON, "malformed JSON"),
        (b"[1, 2]", JSON, "must be a JSON object"),
        (BAD_TIMESTAMP, JSON, "malformed OTLP JSON"),
    ],
)
def test_malformed_bodies_get_400(
    body: bytes,
    content_type: str,
    message: str,
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    status, _, payload = post(collector.http_url, body, content_type)
    assert status == 400
    if content_type == JSON:
        error = json.loads(payload)
        assert error["code"] == 3
        assert message in error["message"]
    else:
        assert message in status_pb2.Status.FromString(payload).message
    assert collector.metric("llmspans_collector_requests_rejected_total", reason="malformed") == 1
    # ... and the collector keeps serving.
    status, _, _ = post(collector.http_url, json.dumps(json_run()).encode(), JSON)
    assert status == 200


def test_wrong_content_type_gets_415(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector()
    status, _, payload = post(collector.http_url, b"hello", "text/plain")
    assert status == 415
    assert "unsupported content type" in json.loads(payload)["message"]


def test_oversized_bodies_get_413(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector(limits={"max_request_bytes": 4096})
    status, _, _ = post(collector.http_url, b"\x00" * 5000, PROTOBUF)
    assert status == 413
    # A gzip bomb: small on the wire, far above the limit once inflated.
    bomb = gzip.compress(b"\x00" * 3_000_000)
    assert len(bomb) < 4096
    status, _, payload = post(collector.http_url, bomb, PROTOBUF, {"Content-Encoding": "gzip"})
    assert status == 413
    assert "after decompression" in status_pb2.Status.FromString(payload).message
    assert collector.metric("llmspans_collector_requests_rejected_total", reason="too_large") == 2

    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda body: body,
        response_deserializer=lambda body: body,
    )
    with pytest.raises(grpc.RpcError) as raised:
        export(b"\x0a" + b"\x80\x28" + b"\x00" * 5120, timeout=5)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with pytest.raises(grpc.RpcError) as raised:
        export(b"\xff\xff\xff", timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    channel.close()


def test_grpc_requests_the_runtime_refuses_are_counted(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    # Above twice the limit the gRPC runtime refuses the message on its length
    # prefix; the collector still counts the refusal. A client streaming more than
    # one message (not an OTLP exporter) is refused too, and nothing is taken.
    collector = start_collector(
        limits={"max_request_bytes": 4096},
        exporters=[{"protocol": "http", "endpoint": sink.url}],
    )
    method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "plain"
    payload = request.SerializeToString()
    with grpc.insecure_channel(collector.grpc_endpoint) as channel:
        export = channel.unary_unary(
            method, request_serializer=lambda body: body, response_deserializer=lambda body: body
        )
        with pytest.raises(grpc.RpcError) as raised:
            export(b"\x0a" + b"\x80\x80\x01" + b"\x00" * 16384, timeout=5)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        streaming = channel.stream_unary(
            method, request_serializer=lambda body: body, response_deserializer=lambda body: body
        )
        with pytest.raises(grpc.RpcError) as raised:
            streaming(iter([payload, payload]), timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unary" in (raised.value.details() or "")
        # A well-formed unary export still goes through afterwards.
        assert ExportTraceServiceResponse.FromString(export(payload, timeout=5)) is not None
    assert collector.metric("llmspans_collector_requests_rejected_total", reason="too_large") == 1
    assert collector.metric("llmspans_collector_requests_rejected_total", reason="malformed") == 1
    assert collector.metric("llmspans_collector_spans_received_total") == 1
    wait_until(lambda: [s.name for s in sink.spans()] == ["plain"])


def test_http_backpressure_then_sdk_retry_delivers_everything(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    collector = start_collector(
        # The orphan trace below holds the bound for trace_timeout_s: long enough that
        # the first run's first span always meets a full collector, even on a slow machine.
        assembly={"max_inflight_spans": 6, "trace_idle_s": 0.2, "trace_timeout_s": 3.0},
        limits={"retry_after_s": 0.5},
        exporters=[{"protocol": "http", "endpoint": sink.url}],
    )
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(7):
        scope.spans.add(
            trace_id=b"\x01" * 16, span_id=bytes([index + 1]) * 8, parent_span_id=b"\x09" * 8
        )
    # More spans than could ever be admitted at once: 413, not a retry loop.
    assert post(collector.http_url, request.SerializeToString(), PROTOBUF)[0] == 413
    scope.spans.pop()
    # Six spans of a trace whose root never comes fill the bound until its timeout.
    assert post(collector.http_url, request.SerializeToString(), PROTOBUF)[0] == 200

    # The exporter's deadline (retries included) is well past the orphan's timeout.
    sender = http_sender(collector.http_url, timeout=30)
    for _ in range(3):
        emit_run(sender.tracer, pipeline="pressure")
    sender.close()
    wait_until(
        lambda: collector.metric("llmspans_task_outcomes_total", pipeline="pressure") == 3,
        what="every run delivered after retries",
    )
    assert collector.metric("llmspans_collector_spans_rejected_total", reason="inflight_limit") > 0
    assert collector.metric("llmspans_stage_calls_total", pipeline="pressure") == 12
    wait_until(lambda: len(sink.spans()) == 6 + 15, what="every span forwarded")


def test_http_429_carries_retry_after(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector(
        assembly={"max_inflight_spans": 2, "trace_timeout_s": 30}, limits={"retry_after_s": 2.5}
    )
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, parent_span_id=b"\x09" * 8)
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x09" * 8)
    assert post(collector.http_url, request.SerializeToString(), PROTOBUF)[0] == 200
    status, headers, payload = post(collector.http_url, request.SerializeToString(), PROTOBUF)
    assert status == 429
    assert headers["Retry-After"] == "3"
    assert status_pb2.Status.FromString(payload).code == 14
    assert collector.metric("llmspans_collector_spans_rejected_total", reason="inflight_limit") == 2


def test_grpc_unavailable_with_retry_info_then_sdk_retry_delivers_everything(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector(
        assembly={"max_inflight_spans": 3, "trace_idle_s": 0.2, "trace_timeout_s": 1.0},
        limits={"retry_after_s": 0.4},
    )
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x01" * 8, parent_span_id=b"\x09" * 8)
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, parent_span_id=b"\x09" * 8)
    scope.spans.add(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, parent_span_id=b"\x09" * 8)
    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda body: body,
        response_deserializer=lambda body: body,
    )
    export(request.SerializeToString(), timeout=5)
    with pytest.raises(grpc.RpcError) as raised:
        export(request.SerializeToString(), timeout=5)
    error: Any = raised.value
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(error.trailing_metadata())
    info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
    assert info.retry_delay.nanos == 400_000_000
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert status.code == 14 and status.details[0].Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    channel.close()

    # The SDK exporter honours RetryInfo: once the trace without root times out,
    # the three spans of the run (one export each) get through.
    sender = grpc_sender(collector.grpc_endpoint, timeout=30)
    emit_run(sender.tracer, pipeline="grpc-pressure", selected=None, verified=None)
    sender.close()
    wait_until(
        lambda: collector.metric("llmspans_task_outcomes_total", pipeline="grpc-pressure") == 1
    )
    assert collector.metric("llmspans_stage_calls_total", pipeline="grpc-pressure") == 2


def test_bearer_token_is_required_when_configured(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector(auth={"bearer_token": "s3cret"})
    body = json.dumps(json_run()).encode()
    status, headers, _ = post(collector.http_url, body, JSON)
    assert status == 401
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, _ = post(collector.http_url, body, JSON, {"Authorization": "Bearer wrong"})
    assert status == 401
    assert collector.metric("llmspans_collector_spans_received_total") == 0

    channel = grpc.insecure_channel(collector.grpc_endpoint)
    export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        request_serializer=lambda body: body,
        response_deserializer=lambda body: body,
    )
    with pytest.raises(grpc.RpcError) as raised:
        export(b"", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    channel.close()
    assert (
        collector.metric("llmspans_collector_requests_rejected_total", reason="unauthenticated")
        == 3
    )

    status, _, _ = post(collector.http_url, body, JSON, {"Authorization": "Bearer s3cret"})
    assert status == 200
    sender = grpc_sender(collector.grpc_endpoint, headers={"authorization": "Bearer s3cret"})
    emit_run(sender.tracer)
    sender.close()
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 2)


def test_exporter_retries_until_the_backend_takes_the_batch(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    sink.fail_next = 3
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    sender = http_sender(collector.http_url)
    emit_run(sender.tracer)
    sender.close()
    wait_until(lambda: len(sink.spans()) == 5, what="delivery after retries")
    assert sink.attempts >= 4
    wait_until(lambda: collector.metric("llmspans_collector_spans_forwarded_total") == 5)
    assert collector.metric("llmspans_collector_spans_dropped_total") == 0


def test_full_exporter_queue_pushes_back(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    sink.fail_next = 1_000_000  # the backend is down
    collector = start_collector(
        exporters=[
            {"protocol": "http", "endpoint": sink.url, "queue_size": 3, "retry_max_elapsed_s": 60}
        ],
        # the queued spans can never leave: stop without waiting the default flush time
        shutdown={"timeout_s": 1.0},
    )
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index in range(2):
        scope.spans.add(
            trace_id=b"\x01" * 16, span_id=bytes([index + 1]) * 8, parent_span_id=b"\x09" * 8
        )
    assert post(collector.http_url, request.SerializeToString(), PROTOBUF)[0] == 200
    status, headers, _ = post(collector.http_url, request.SerializeToString(), PROTOBUF)
    assert status == 503
    assert "Retry-After" in headers
    assert collector.metric("llmspans_collector_spans_rejected_total", reason="queue_full") == 2
