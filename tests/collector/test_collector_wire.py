"""OTLP JSON in and out: the decoder's quirks and the file exporter's round trip."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from llmspans._tracefiles import iter_otlp_json_lines
from llmspans.collector._wire import RequestError, json_to_protobuf, protobuf_to_json


def test_json_with_hex_ids_integer_enums_and_string_int64() -> None:
    document = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "",
                                "name": "x",
                                "kind": 2,
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "status": {"code": "STATUS_CODE_ERROR"},
                                "links": [
                                    {
                                        "traceId": "00000000000000000000000000000001",
                                        "spanId": "0000000000000002",
                                    }
                                ],
                                "someFutureField": {"ignored": True},
                            }
                        ]
                    }
                ]
            }
        ]
    }
    payload, rejected, errors = json_to_protobuf(document)
    assert (rejected, errors) == (0, [])
    span = ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.span_id.hex() == "eee19b7ec3c1b174"
    assert span.kind == 2
    assert span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.links[0].span_id == bytes.fromhex("0000000000000002")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("traceId", "zz", "not hex"),
        ("traceId", "00" * 16, "all zero"),
        ("spanId", "abcd", "16 hex characters"),
        ("parentSpanId", "abc", "not hex"),
    ],
)
def test_invalid_ids_are_rejected_per_span(field: str, value: str, message: str) -> None:
    good = {"traceId": "01" * 16, "spanId": "02" * 8, "name": "good"}
    bad = {**good, "name": "bad", field: value}
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}
    payload, rejected, errors = json_to_protobuf(document)
    assert rejected == 1
    assert message in errors[0] and "'bad'" in errors[0]
    spans = ExportTraceServiceRequest.FromString(payload).resource_spans[0].scope_spans[0].spans
    assert [span.name for span in spans] == ["good"]


def test_malformed_structure_is_a_request_error() -> None:
    with pytest.raises(RequestError) as raised:
        json_to_protobuf({"resourceSpans": {"not": "a list"}})
    assert raised.value.status == 400


def test_file_lines_round_trip_through_the_offline_reader() -> None:
    request = ExportTraceServiceRequest()
    span = (
        request.resource_spans.add()
        .scope_spans.add()
        .spans.add(trace_id=bytes(range(16)), span_id=bytes(range(1, 9)), name="chat m", kind=3)
    )
    span.start_time_unix_nano = 2**62
    attribute = span.attributes.add(key="llmspans.stage")
    attribute.value.string_value = "generation"
    line = json.dumps(protobuf_to_json(request.SerializeToString()))
    document = json.loads(line)
    written = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert written["traceId"] == bytes(range(16)).hex()
    assert written["kind"] == 3
    assert written["startTimeUnixNano"] == str(2**62)
    (record,) = iter_otlp_json_lines([line])
    assert record.trace_id == bytes(range(16))
    assert record.stage == "generation"
    # ... and the collector's own JSON decoder reads its own output.
    payload, rejected, _ = json_to_protobuf(document)
    assert rejected == 0
    assert ExportTraceServiceRequest.FromString(payload) == request
