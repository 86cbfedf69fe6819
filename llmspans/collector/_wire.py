"""The OTLP trace wire format as the collector reads and writes it.

Protobuf requests parse with the runtime's own (upb) parser, which validates them;
the processor then reads the spans from the same bytes with the slim schema
(``llmspans.collector._protobuf.SlimDecoder``), decoding only the attributes the
core uses.
OTLP JSON requests are converted into protobuf first (hex ids into bytes, integer
or named enums, 64-bit integers as strings or numbers), so both encodings share one
path after decoding; spans with invalid ids are dropped there and reported as a
partial success. The file exporter writes protobuf back as OTLP JSON, as the
OpenTelemetry file exporters do.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

__all__ = [
    "RequestError",
    "json_to_protobuf",
    "parse_request",
    "protobuf_to_json",
]


class RequestError(Exception):
    """A request the collector refuses as a whole; ``status`` is the HTTP status.

    ``retry_after`` (seconds) when the sender should try again later (a byte budget
    is full right now): answered with ``Retry-After`` / gRPC UNAVAILABLE and ``RetryInfo``.
    """

    def __init__(
        self, status: int, reason: str, message: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def parse_request(body: bytes) -> ExportTraceServiceRequest:
    """Parse a protobuf ``ExportTraceServiceRequest``; :class:`RequestError` (400) when
    the bytes are not one."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except DecodeError as error:
        raise RequestError(400, "malformed", f"malformed OTLP protobuf: {error}") from None
    return request


# --- OTLP JSON -----------------------------------------------------------------------

_ID_KEYS: Final = (
    ("traceId", "trace_id", 16),
    ("spanId", "span_id", 8),
    ("parentSpanId", "parent_span_id", 8),
)


def _hex_to_base64(value: object, size: int, what: str, required: bool) -> str:
    if value is None or value == "":
        if required:
            raise ValueError(f"missing {what}")
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not hex") from None
    if len(raw) != size:
        raise ValueError(f"{what} {value!r} must be {size * 2} hex characters")
    if required and not any(raw):
        raise ValueError(f"{what} {value!r} is all zero")
    return base64.b64encode(raw).decode("ascii")


def _fix_span_ids(span: dict[str, Any]) -> None:
    """Rewrite a JSON span's hex ids into the base64 protobuf's JSON mapping expects."""
    for camel, snake, size in _ID_KEYS:
        key = camel if camel in span else snake
        if key in span:
            what = camel.replace("Id", " id").replace("Span", " span").lower()
            span[key] = _hex_to_base64(span[key], size, what, required=camel != "parentSpanId")
        elif camel != "parentSpanId":
            raise ValueError(f"missing {camel}")
    for link in span.get("links") or ():
        if not isinstance(link, dict):
            raise ValueError("a link must be an object")
        for camel, snake, size in _ID_KEYS[:2]:
            key = camel if camel in link else snake
            link[key] = _hex_to_base64(link.get(key), size, f"link {camel}", required=True)


def json_to_protobuf(document: object) -> tuple[bytes, int, list[str]]:
    """Convert an OTLP JSON ``ExportTraceServiceRequest`` into protobuf bytes.

    Spans with invalid ids are dropped from the result and reported: returns
    ``(protobuf bytes, rejected span count, error messages)``. Raises
    :class:`RequestError` (400) when the document as a whole is malformed.
    """
    if not isinstance(document, dict):
        raise RequestError(400, "malformed", "OTLP JSON: the body must be a JSON object")
    rejected = 0
    errors: list[str] = []
    try:
        for resource_spans in _list(document, "resourceSpans", "resource_spans"):
            for scope_spans in _list(resource_spans, "scopeSpans", "scope_spans"):
                spans = _list(scope_spans, "spans", "spans")
                kept = []
                for span in spans:
                    if not isinstance(span, dict):
                        raise ValueError("a span must be an object")
                    try:
                        _fix_span_ids(span)
                    except ValueError as error:
                        rejected += 1
                        errors.append(f"span {span.get('name', '')!r}: {error}")
                    else:
                        kept.append(span)
                if len(kept) != len(spans):
                    scope_spans["spans"] = kept
        message = json_format.ParseDict(
            document, ExportTraceServiceRequest(), ignore_unknown_fields=True
        )
    except (ValueError, json_format.ParseError, TypeError, AttributeError) as error:
        raise RequestError(400, "malformed", f"malformed OTLP JSON: {error}") from None
    return message.SerializeToString(), rejected, errors


def _list(container: object, camel: str, snake: str) -> list[Any]:
    if not isinstance(container, dict):
        raise ValueError(f"expected an object holding {camel!r}")
    value = container.get(camel, container.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{camel!r} must be an array")
    return value


def _ids_to_hex(span: dict[str, Any]) -> None:
    for key in ("traceId", "spanId", "parentSpanId"):
        value = span.get(key)
        if value:
            span[key] = base64.b64decode(value).hex()
    for link in span.get("links", ()):
        for key in ("traceId", "spanId"):
            value = link.get(key)
            if value:
                link[key] = base64.b64decode(value).hex()


def protobuf_to_json(payload: bytes) -> dict[str, Any]:
    """OTLP JSON of a protobuf ``ExportTraceServiceRequest``, as the OTLP file
    exporters write it: lowerCamelCase keys, hex ids, integer enums, int64 as strings."""
    message = ExportTraceServiceRequest.FromString(payload)
    document = json_format.MessageToDict(message, use_integers_for_enums=True)
    try:
        for resource_spans in document.get("resourceSpans", ()):
            for scope_spans in resource_spans.get("scopeSpans", ()):
                for span in scope_spans.get("spans", ()):
                    _ids_to_hex(span)
    except binascii.Error as error:  # pragma: no cover - the runtime wrote this base64
        raise ValueError(f"cannot re-encode ids: {error}") from None
    return document
