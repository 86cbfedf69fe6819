"""A prototype of the collector's span decoding that does not build a message per attribute.

The collector needs a dozen known attributes of each span; the rest it only
forwards. Parsing with the full OTLP schema makes upb build every ``KeyValue``
and ``AnyValue`` as Python-visible messages the moment they are touched, and
walking ``span.attributes`` touches all of them. This prototype parses the same
bytes with a *slim* schema (same field numbers) whose ``Span.attributes`` is
``repeated bytes``: each attribute stays an encoded ``KeyValue``; its key is read
straight from the bytes (``0x0A``, a one-byte length, the key) and only the known
keys are decoded, with the real ``AnyValue`` type and the core's own value
decoding. Fields the slim schema does not name (kind, events, trace state, ...)
are kept by upb as unknown fields, so re-serializing a slim span gives the
original span back for forwarding.

Short attributes (at most 64 encoded bytes: stage, pipeline, operation, model,
flags) repeat from span to span, so their decoded values are cached by their
encoded bytes; long ones (document id lists) are decoded every time, so the
benchmark's identical id lists do not flatter the prototype.

``bench_core.py`` times it next to ``record_from_otlp_span`` and checks that both
give the same records for the whole benchmark load.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from llmspans.core import convert as _convert
from llmspans.core.records import SpanRecord

_F = descriptor_pb2.FieldDescriptorProto


def _build() -> Any:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="llmspans_bench_slim.proto", package="llmspans_bench_slim", syntax="proto3"
    )

    def message(name: str, fields: list[tuple[str, int, int, int, str | None]]) -> None:
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = f".llmspans_bench_slim.{type_name}"

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("Status", [("code", 3, _F.TYPE_INT32, opt, None)])
    message(
        "Link",
        [("trace_id", 1, _F.TYPE_BYTES, opt, None), ("span_id", 2, _F.TYPE_BYTES, opt, None)],
    )
    message(
        "Span",
        [
            ("trace_id", 1, _F.TYPE_BYTES, opt, None),
            ("span_id", 2, _F.TYPE_BYTES, opt, None),
            ("parent_span_id", 4, _F.TYPE_BYTES, opt, None),
            ("name", 5, _F.TYPE_STRING, opt, None),
            ("start_time_unix_nano", 7, _F.TYPE_FIXED64, opt, None),
            ("end_time_unix_nano", 8, _F.TYPE_FIXED64, opt, None),
            ("attributes", 9, _F.TYPE_BYTES, rep, None),
            ("links", 13, _F.TYPE_MESSAGE, rep, "Link"),
            ("status", 15, _F.TYPE_MESSAGE, opt, "Status"),
        ],
    )
    message("ScopeSpans", [("spans", 2, _F.TYPE_MESSAGE, rep, "Span")])
    message("ResourceSpans", [("scope_spans", 2, _F.TYPE_MESSAGE, rep, "ScopeSpans")])
    message(
        "ExportTraceServiceRequest", [("resource_spans", 1, _F.TYPE_MESSAGE, rep, "ResourceSpans")]
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("llmspans_bench_slim.ExportTraceServiceRequest")
    )


SlimRequest = _build()

#: encoded key prefix (0x0A, length, key bytes) -> (record field, decoding code)
_KNOWN: dict[bytes, tuple[str, int]] = {
    b"\x0a" + bytes([len(key.encode())]) + key.encode(): spec
    for key, spec in _convert._PROTO_FIELDS.items()
    if len(key.encode()) < 0x80
}
_PREFIX_LENGTHS = sorted({len(prefix) for prefix in _KNOWN})
_ERROR = 2  # STATUS_CODE_ERROR
_CACHED_BYTES = 64
_CACHE_SIZE = 65_536
_MISSING = object()


def records_from_slim(request: Any, cache: dict[bytes, object]) -> list[SpanRecord]:
    """Every span of a slim-parsed request as a :class:`SpanRecord`.

    ``cache`` maps encoded short attributes to their decoded values; the caller keeps
    it across requests (bounded here to 65,536 entries, never evicted: a prototype).
    """
    out: list[SpanRecord] = []
    known = _KNOWN
    decode = _convert._proto_value
    bad_marker = _convert._BAD
    from_string = KeyValue.FromString
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                record = SpanRecord(
                    span.trace_id,
                    span.span_id,
                    span.parent_span_id,
                    span.name,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    span.status.code == _ERROR,
                )
                bad = 0
                for raw in span.attributes:
                    # 0x0A, one length byte, the key: a dict lookup on the prefix.
                    spec = known.get(raw[: 2 + raw[1]]) if len(raw) > 1 else None
                    if spec is None:
                        continue
                    field, code = spec
                    # Short attributes (stage, pipeline, model, flags) repeat across
                    # spans: their decoded value is cached by their encoded bytes.
                    if len(raw) <= _CACHED_BYTES:
                        value = cache.get(raw, _MISSING)
                        if value is _MISSING:
                            value = decode(field, code, from_string(raw).value)
                            if len(cache) < _CACHE_SIZE:
                                cache[raw] = value
                    else:
                        value = decode(field, code, from_string(raw).value)
                    if value is bad_marker:
                        bad += 1
                    else:
                        setattr(record, field, value)
                if bad:
                    record.bad_attributes = bad
                if span.links:
                    record.links = tuple((link.trace_id, link.span_id) for link in span.links)
                out.append(record)
    return out
