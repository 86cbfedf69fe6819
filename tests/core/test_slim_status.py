"""The slim schema's encoded ``Status`` and the strings the decoder shares.

The slim schema keeps a span's ``Status`` as its encoded bytes (with presence) and
reads the code from them: every encoding must give the reference converter's
``error`` flag, and a re-serialised slim request must equal the original, an empty
status the sender set included.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmspans import _attributes as A
from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder, record_from_otlp_span
from llmspans.core.records import SpanRecord

_TRACE = bytes(range(1, 17))


def _request(spans: list[Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def _decode(request: ExportTraceServiceRequest) -> tuple[list[SpanRecord], Any]:
    slim: Any = SLIM_EXPORT_REQUEST.FromString(request.SerializeToString())
    decoder = SlimDecoder()
    spans = slim.resource_spans[0].scope_spans[0].spans
    return [decoder.record(span) for span in spans], slim


def _span(index: int, **fields: Any) -> Span:
    return Span(trace_id=_TRACE, span_id=bytes([index + 1]) * 8, name=f"s{index}", **fields)


# (Status as the sender set it, or None for no status field, expected error flag)
_STATUSES: list[tuple[Status | None, bool]] = [
    (None, False),
    (Status(), False),  # present but empty: forwarded as an empty status
    (Status(code=Status.STATUS_CODE_OK), False),
    (Status(code=Status.STATUS_CODE_ERROR), True),
    (Status(code=Status.STATUS_CODE_ERROR, message="boom"), True),
    (Status(code=Status.STATUS_CODE_UNSET, message="\x18\x02"), False),  # looks like ERROR
    (Status(code=Status.STATUS_CODE_OK, message="fine"), False),
    (Status(code=7), False),  # an unknown code (open enum)
]


@pytest.mark.parametrize(("status", "error"), _STATUSES)
def test_status_code_is_read_from_its_bytes(status: Status | None, error: bool) -> None:
    span = _span(0) if status is None else _span(0, status=status)
    request = _request([span])
    (record,), slim = _decode(request)
    assert record.error is error
    assert record == record_from_otlp_span(span)
    forwarded = ExportTraceServiceRequest.FromString(slim.SerializeToString())
    assert forwarded == request
    assert forwarded.resource_spans[0].scope_spans[0].spans[0].HasField("status") is (
        status is not None
    )


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (lengths below 2**14 here)."""
    size = len(payload)
    length = bytes([size]) if size < 0x80 else bytes([size & 0x7F | 0x80, size >> 7])
    return bytes([number << 3 | 2]) + length + payload


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (b"\x18\x82\x00", True),  # code 2 as a three-byte varint
        (b"\x18\x01\x18\x02", True),  # the last value of a field wins
        (b"\x18\x02\x18\x01", False),
        (b"\x08\x02", False),  # field 1 (deprecated code), not the code
    ],
)
def test_unusual_status_encodings_agree_with_the_reference(status: bytes, error: bool) -> None:
    span_bytes = _span(0).SerializeToString() + _field(15, status)
    data = _field(1, _field(2, _field(2, span_bytes)))
    reference = ExportTraceServiceRequest.FromString(data)
    slim: Any = SLIM_EXPORT_REQUEST.FromString(data)
    record = SlimDecoder().record(slim.resource_spans[0].scope_spans[0].spans[0])
    assert record.error is error
    assert record == record_from_otlp_span(reference.resource_spans[0].scope_spans[0].spans[0])


def test_repeated_strings_are_shared_between_records() -> None:
    ids = [f"doc-{index}" for index in range(12)]
    first = _span(0)
    second = _span(1)
    for span in (first, second):
        span.attributes.add(key=A.STAGE).value.string_value = A.STAGE_RETRIEVAL
        values = span.attributes.add(key=A.RETRIEVAL_DOCUMENT_IDS).value.array_value.values
        for doc in ids:
            values.add().string_value = doc
        # The same list through the general path (a mixed layout it cannot take
        # straight from the bytes: a non-minimal length prefix is impossible to
        # write here, so use a long id).
        long_values = span.attributes.add(key=A.CONTEXT_INPUT_IDS).value.array_value.values
        for doc in [*ids, "x" * 200]:
            long_values.add().string_value = doc
    one, two = _decode(_request([first, second]))[0]
    assert one.document_ids == two.document_ids == tuple(ids)
    assert all(a is b for a, b in zip(one.document_ids or (), two.document_ids or (), strict=True))
    assert all(a is b for a, b in zip(one.input_ids or (), two.input_ids or (), strict=True))
    assert one.stage is two.stage
    assert one.name == "s0" and two.name == "s1"
