"""Converters: SDK ReadableSpan, OTLP protobuf and OTLP JSON agree, and bad input is handled."""

# ruff: noqa: E501  (hand-written OTLP JSON reads best unwrapped)

from __future__ import annotations

import base64
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from llmspans import _attributes as A
from llmspans._tracefiles import iter_otlp_json_file, iter_otlp_json_lines
from llmspans.collector._protobuf import record_from_otlp_span
from llmspans.core.convert import records_from_otlp_json
from llmspans.core.records import ATTRIBUTE_FIELDS, CONTENT_FIELDS, SpanRecord
from llmspans.embedded import record_from_readable_span

Tracing = tuple[TracerProvider, InMemorySpanExporter]


def _make_spans(provider: TracerProvider) -> None:
    """A small RAG run plus a feedback span, made with the plain SDK tracer."""
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "invoke_workflow rag",
        attributes={A.STAGE: "pipeline", A.PIPELINE: "rag", A.TASK_COMPLETED: True},
    ) as root:
        with tracer.start_as_current_span(
            "retrieval faq",
            kind=SpanKind.CLIENT,
            attributes={
                A.STAGE: "retrieval",
                A.PIPELINE: "rag",
                A.RETRIEVAL_DOCUMENT_IDS: ["d1", "d2", "d3"],
                A.RETRIEVAL_SCORES: [0.9, 0.5, 0.25],
                A.RETRIEVAL_RELEVANT_IDS: ["d1"],
                A.GEN_AI_REQUEST_TOP_K: 3,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "context_selection top2",
            attributes={
                A.STAGE: "context_selection",
                A.CONTEXT_INPUT_IDS: ["d1", "d2", "d3"],
                A.CONTEXT_SELECTED_IDS: ["d1", "d2"],
            },
        ):
            pass
        with tracer.start_as_current_span(
            "chat gpt-test",
            kind=SpanKind.CLIENT,
            attributes={
                A.STAGE: "generation",
                A.GENERATION_CITATIONS: ["d1"],
                A.GENERATION_CONFIDENCE: 0.75,
                A.GENERATION_REFUSED: False,
                A.GENERATION_OUTPUT_VALID: True,
                A.COST_USD: 0.0125,
                A.GEN_AI_USAGE_INPUT_TOKENS: 1200,
            },
        ):
            pass
        with tracer.start_as_current_span(
            "execute_tool refund", attributes={A.STAGE: "action", A.ACTION_VERIFIED: False}
        ) as action:
            action.set_attribute(A.ACTION_VERIFICATION, "refund not found")
            action.set_attribute(A.ERROR_TYPE, "VerificationError")
            action.set_status(Status(StatusCode.ERROR, "boom"))
    with tracer.start_as_current_span(
        "feedback edit",
        links=[Link(root.get_span_context())],
        attributes={A.STAGE: "feedback", A.FEEDBACK_KIND: "edit", A.FEEDBACK_EDIT_RATIO: 0.3},
    ):
        pass


def _spans(tracing: Tracing) -> tuple[ReadableSpan, ...]:
    provider, exporter = tracing
    _make_spans(provider)
    spans = exporter.get_finished_spans()
    assert len(spans) == 6
    return spans


def _hexify_ids(value: Any) -> Any:
    """Turn protobuf's base64 ids into the hex ids OTLP JSON specifies."""
    if isinstance(value, dict):
        return {
            key: (
                base64.b64decode(item).hex()
                if key in ("traceId", "spanId", "parentSpanId") and item
                else _hexify_ids(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hexify_ids(item) for item in value]
    return value


def test_readable_span_conversion(tracing: Tracing) -> None:
    spans = _spans(tracing)
    records = {record.name: record for record in map(record_from_readable_span, spans)}
    root = records["invoke_workflow rag"]
    retrieval = records["retrieval faq"]
    action = records["execute_tool refund"]
    feedback = records["feedback edit"]
    assert root.is_root and root.stage == "pipeline" and root.task_completed is True
    assert len(root.trace_id) == 16 and len(root.span_id) == 8
    assert retrieval.parent_span_id == root.span_id and retrieval.trace_id == root.trace_id
    assert retrieval.document_ids == ("d1", "d2", "d3")
    assert retrieval.scores == (0.9, 0.5, 0.25)
    assert retrieval.relevant_ids == ("d1",)
    generation = records["chat gpt-test"]
    assert generation.confidence == 0.75 and generation.cost_usd == 0.0125
    assert generation.refused is False and generation.output_valid is True
    assert action.error and action.verified is False
    assert action.verification == "refund not found" and action.error_type == "VerificationError"
    assert not retrieval.error
    assert feedback.links == ((root.trace_id, root.span_id),)
    assert feedback.feedback_kind == "edit" and feedback.edit_ratio == 0.3
    assert root.end_ns >= action.end_ns > action.start_ns > 0
    assert all(record.bad_attributes == 0 for record in records.values())


def test_proto_and_json_agree_with_the_sdk(tracing: Tracing) -> None:
    spans = _spans(tracing)
    expected = sorted(map(record_from_readable_span, spans), key=lambda r: r.span_id)
    request = encode_spans(spans)
    from_proto = sorted(
        (
            record_from_otlp_span(span)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ),
        key=lambda r: r.span_id,
    )
    assert from_proto == expected

    as_dict = json_format.MessageToDict(request)
    from_base64_json = sorted(records_from_otlp_json(as_dict), key=lambda r: r.span_id)
    assert from_base64_json == expected
    hex_json = _hexify_ids(as_dict)
    assert len(hex_json["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]) == 32
    from_hex_json = sorted(records_from_otlp_json(hex_json), key=lambda r: r.span_id)
    assert from_hex_json == expected
    snake = json_format.MessageToDict(request, preserving_proto_field_name=True)
    assert sorted(records_from_otlp_json(snake), key=lambda r: r.span_id) == expected


def test_json_by_hand_with_quirks() -> None:
    request = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "s"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": "EEE19B7EC3C1B174",
                                "parentSpanId": "",
                                "name": "chat m",
                                "kind": "SPAN_KIND_CLIENT",
                                "startTimeUnixNano": "1544712660000000000",
                                "endTimeUnixNano": 1544712661000000000,
                                "status": {"code": "STATUS_CODE_ERROR", "message": "x"},
                                "attributes": [
                                    {"key": "llmspans.stage", "value": {"stringValue": "generation"}},
                                    {"key": "llmspans.cost.usd", "value": {"intValue": "2"}},
                                    {"key": "llmspans.generation.confidence", "value": {"doubleValue": "0.5"}},
                                    {"key": "llmspans.generation.refused", "value": {"boolValue": True}},
                                    {
                                        "key": "llmspans.generation.citations",
                                        "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"stringValue": "b"}]}},
                                    },
                                    {"key": "unknown.key", "value": {"kvlistValue": {"values": []}}},
                                    {"key": "llmspans.retrieval.scores", "value": {"arrayValue": {}}},
                                ],
                                "links": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00f067aa0ba902b7"}],
                            }
                        ],
                    }
                ],
            },
            {"scope_spans": [{"spans": [{"trace_id": "01" * 16, "span_id": "02" * 8, "status": {"code": 2}}]}]},
            {"instrumentationLibrarySpans": [{"spans": [{"traceId": "03" * 16, "spanId": "04" * 8, "status": {"code": 1}}]}]},
        ]
    }  # fmt: skip
    first, second, third = records_from_otlp_json(request)
    assert first.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert first.parent_span_id == b"" and first.is_root
    assert first.start_ns == 1544712660000000000 and first.duration_s == 1.0
    assert first.error and first.stage == "generation"
    assert first.cost_usd == 2.0 and first.confidence == 0.5 and first.refused is True
    assert first.citations == ("a", "b") and first.scores == ()
    assert first.links == ((first.trace_id, bytes.fromhex("00f067aa0ba902b7")),)
    assert first.bad_attributes == 0
    assert second.error and second.trace_id == bytes.fromhex("01" * 16)
    assert not third.error


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def _array(field: str, items: list[Any]) -> ArrayValue:
    return ArrayValue(values=[AnyValue(**{field: item}) for item in items])


WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    (A.GENERATION_REFUSED, {"string_value": "true"}),
    (A.GENERATION_CONFIDENCE, {"double_value": math.nan}),
    (A.GENERATION_CONFIDENCE, {"double_value": 1.5}),
    (A.COST_USD, {"double_value": math.inf}),
    (A.COST_USD, {"double_value": -1.0}),
    (A.FEEDBACK_EDIT_RATIO, {"string_value": "0.3"}),
    (A.STAGE, {"string_value": "rerank"}),
    (A.STAGE, {"int_value": 3}),
    (A.FEEDBACK_KIND, {"string_value": "love"}),
    (A.RETRIEVAL_DOCUMENT_IDS, {"string_value": "d1,d2"}),
    (A.TASK_COMPLETED, {"int_value": 1}),
]


@pytest.mark.parametrize(("key", "value"), WRONG_TYPES)
def test_wrong_types_are_counted_and_ignored_in_every_source(
    key: str, value: dict[str, Any], tracing: Tracing
) -> None:
    field = ATTRIBUTE_FIELDS[key][0]
    span = ProtoSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, attributes=[_kv(key, **value)])
    record = record_from_otlp_span(span)
    assert record.bad_attributes == 1 and getattr(record, field) is None

    as_json = json_format.MessageToDict(span)
    (from_json,) = records_from_otlp_json(
        {"resourceSpans": [{"scopeSpans": [{"spans": [as_json]}]}]}
    )
    assert from_json.bad_attributes == 1 and getattr(from_json, field) is None

    provider, exporter = tracing
    python_value = next(
        iter(
            json_format.MessageToDict(AnyValue(**value), preserving_proto_field_name=True).values()
        )
    )
    if isinstance(python_value, str) and "int_value" in value:
        python_value = int(python_value)
    with provider.get_tracer("t").start_as_current_span("s", attributes={key: python_value}):
        pass
    (readable,) = exporter.get_finished_spans()
    converted = record_from_readable_span(readable)
    assert converted.bad_attributes == 1 and getattr(converted, field) is None


def test_mixed_and_bad_arrays_in_proto() -> None:
    mixed = ArrayValue(values=[AnyValue(string_value="d1"), AnyValue(int_value=2)])
    empty_string = ArrayValue(values=[AnyValue(string_value="")])
    scores = ArrayValue(
        values=[AnyValue(double_value=0.5), AnyValue(int_value=1), AnyValue(double_value=0.0)]
    )
    bad_scores = ArrayValue(values=[AnyValue(double_value=0.5), AnyValue(double_value=math.nan)])
    span = ProtoSpan(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        attributes=[
            _kv(A.RETRIEVAL_DOCUMENT_IDS, array_value=mixed),
            _kv(A.CONTEXT_SELECTED_IDS, array_value=empty_string),
            _kv(A.RETRIEVAL_SCORES, array_value=scores),
            _kv(A.CONTEXT_INPUT_IDS, array_value=_array("string_value", ["a", "b"])),
            _kv(A.GENERATION_CITATIONS, array_value=_array("double_value", [1.0])),
            _kv(A.GENERATION_REFUSED, bool_value=False),
            _kv(A.GENERATION_OUTPUT_VALID),  # an empty AnyValue
            _kv(A.COST_USD, double_value=0.0),
            _kv(A.PIPELINE, string_value=""),
            _kv(A.RETRIEVAL_RELEVANT_IDS, array_value=bad_scores),
        ],
        status=ProtoStatus(code=ProtoStatus.STATUS_CODE_ERROR),
        links=[ProtoSpan.Link(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)],
    )
    record = record_from_otlp_span(span)
    assert record.document_ids is None
    assert record.selected_ids == ("",)
    assert record.scores == (0.5, 1.0, 0.0)
    assert record.input_ids == ("a", "b")
    assert record.citations is None
    assert record.refused is False
    assert record.output_valid is None
    assert record.cost_usd == 0.0
    assert record.pipeline == ""
    assert record.relevant_ids is None
    assert record.bad_attributes == 4
    assert record.error
    assert record.links == ((b"\x03" * 16, b"\x04" * 8),)
    bad_float_array = ProtoSpan(
        attributes=[_kv(A.RETRIEVAL_SCORES, array_value=bad_scores)], trace_id=b"\x01" * 16
    )
    assert record_from_otlp_span(bad_float_array).bad_attributes == 1


def _request(span: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {"scopeSpans": [{}, {"spans": [{"traceId": "01" * 16, "spanId": "02" * 8}, span]}]}
        ]
    }


GOOD = {"traceId": "01" * 16, "spanId": "02" * 8}


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (
            _request({**GOOD, "traceId": "xyz"}),
            "resourceSpans[0].scopeSpans[1].spans[1].traceId: expected 32 hex characters",
        ),
        (_request({**GOOD, "traceId": "0" * 32}), "spans[1].traceId: an all-zero id is invalid"),
        (
            _request({**GOOD, "spanId": None}),
            "spans[1].spanId: missing, expected 16 hex characters",
        ),
        (_request({**GOOD, "spanId": 12}), "spans[1].spanId: expected 16 hex characters, got int"),
        (_request({**GOOD, "parentSpanId": "abc"}), "spans[1].parentSpanId: expected 16 hex"),
        (
            _request({**GOOD, "startTimeUnixNano": "soon"}),
            "spans[1].startTimeUnixNano: expected an integer",
        ),
        (
            _request({**GOOD, "endTimeUnixNano": -5}),
            "spans[1].endTimeUnixNano: expected a non-negative",
        ),
        (
            _request({**GOOD, "status": {"code": "STATUS_CODE_BROKEN"}}),
            "spans[1].status.code: unknown",
        ),
        (_request({**GOOD, "attributes": {"key": "x"}}), "spans[1].attributes: expected an array"),
        (
            _request({**GOOD, "attributes": [{"key": 5}]}),
            "spans[1].attributes[0].key: expected a string",
        ),
        (
            _request({**GOOD, "attributes": [{"key": A.STAGE, "value": "generation"}]}),
            "spans[1].attributes[0].value: expected an object",
        ),
        (
            _request({**GOOD, "links": [{"traceId": "01" * 16}]}),
            "spans[1].links[0].spanId: missing",
        ),
        (_request({**GOOD, "name": 7}), "spans[1].name: expected a string"),
        (_request("not a span"), "spans[1]: expected an object, got str"),  # type: ignore[arg-type]
        ({"resourceSpans": {"x": 1}}, "resourceSpans: expected an array"),
        ([], "request: expected an object"),
    ],
)
def test_malformed_json_names_the_path(request_body: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        records_from_otlp_json(request_body)
    assert message in str(caught.value)


def test_json_lines_skip_bad_lines_and_keep_the_rest(tmp_path: Path) -> None:
    good = json.dumps(_request(GOOD))
    lines = [
        good,
        "",
        "{not json",
        json.dumps(_request({**GOOD, "spanId": "zz"})),
        good,
        "[" * 5000,
    ]
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors: list[tuple[int, str]] = []
    records = list(iter_otlp_json_file(path, lambda line, error: errors.append((line, error))))
    # two spans from each good line, and the one valid span of line 4
    assert len(records) == 5
    assert [line for line, _ in errors] == [3, 4, 6]
    assert errors[0][1].startswith("invalid JSON")
    assert "spans[1].spanId" in errors[1][1]
    with pytest.raises(ValueError, match=r"^line 3: invalid JSON"):
        list(iter_otlp_json_lines(lines))


def test_records_stay_plain_data() -> None:
    # The record is the one shape all three sources produce: no hidden extra state.
    # Content fields live in one dict slot, read and written under their own names.
    names = {field.name for field in dataclasses.fields(SpanRecord)}
    assert {field for field, _ in ATTRIBUTE_FIELDS.values()} <= names | CONTENT_FIELDS
    assert CONTENT_FIELDS.isdisjoint(names) and "content" in names
    record = SpanRecord(b"\x01" * 16, b"\x02" * 8)
    assert record.content is None and record.query is None  # no content: no dict
    record.query = "refund?"
    record.claims = '{"doc-1": "5 days"}'
    assert record.content == {"query": "refund?", "claims": '{"doc-1": "5 days"}'}
    record.query = None
    assert record.query is None and record.content == {"claims": '{"doc-1": "5 days"}'}


def test_a_bad_span_does_not_cost_the_valid_spans_of_its_line() -> None:
    good_a = {"traceId": "01" * 16, "spanId": "0a" * 8, "name": "a"}
    good_b = {"traceId": "01" * 16, "spanId": "0b" * 8, "name": "b"}
    request = {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [good_a, {**GOOD, "traceId": "nothex"}, good_b]}]},
            {"scopeSpans": 7},
        ]
    }
    line = json.dumps(request)
    errors: list[tuple[int, str]] = []
    records = list(iter_otlp_json_lines([line], lambda n, m: errors.append((n, m))))
    assert [record.name for record in records] == ["a", "b"]
    ((number, message),) = errors
    assert number == 1
    assert message.startswith("resourceSpans[0].scopeSpans[0].spans[1].traceId: expected 32 hex")
    assert "2 malformed part(s) skipped" in message and "2 valid span(s)" in message
    with pytest.raises(ValueError, match=r"^line 1: resourceSpans\[0\]"):
        list(iter_otlp_json_lines([line]))
