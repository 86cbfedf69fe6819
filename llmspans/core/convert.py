"""Converters from every span source into :class:`~llmspans.core.records.SpanRecord`.

Three sources, one record:

* :func:`record_from_readable_span`: an SDK ``ReadableSpan`` (the embedded mode).
* :func:`record_from_otlp_span`: an OTLP protobuf ``Span`` (it walks the attribute
  list once and reads only the keys listed in
  :data:`~llmspans.core.records.ATTRIBUTE_FIELDS`).
* :class:`SlimDecoder`: the same records from a request parsed with the slim schema
  :data:`SLIM_EXPORT_REQUEST` (the collector's hot path: attributes stay encoded and
  only the known keys are decoded).
* :func:`records_from_otlp_json` / :func:`iter_otlp_json_file`: OTLP JSON, one
  ``ExportTraceServiceRequest`` per line, as the OpenTelemetry file exporters write
  it (offline analysis).

Every converter also reads the few keys of the other conventions (OpenTelemetry
``gen_ai.*``, OpenInference, OpenLLMetry) that :mod:`llmspans.core.conventions`
lists, and lets :func:`~llmspans.core.conventions.apply` fill the record from them;
a span without those keys pays nothing for it.

Structural problems (an id that is not hex, a span that is not an object) raise
``ValueError`` naming the path of the bad value. A *known attribute* with a value
of the wrong type (a string where a bool belongs, a NaN confidence, a mixed array)
is not an error: it is skipped and counted in ``SpanRecord.bad_attributes``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from sys import intern
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.trace import StatusCode

from llmspans import _attributes as A
from llmspans.core.conventions import (
    FOREIGN_FIELDS,
    INDEXED_STARTS,
    PART_OTHER,
    Collected,
    apply,
    indexed_key,
)
from llmspans.core.records import (
    ATTRIBUTE_FIELDS,
    CONTENT_FIELDS,
    MAX_CONTENT_CHARS,
    SpanRecord,
    ValueKind,
)

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = [
    "SLIM_EXPORT_REQUEST",
    "SlimDecoder",
    "iter_otlp_json_file",
    "iter_otlp_json_lines",
    "record_from_otlp_span",
    "record_from_readable_span",
    "records_from_otlp_json",
]

#: OTLP ``Status.code`` of an error (``STATUS_CODE_ERROR``).
_STATUS_ERROR: Final = 2


class _Bad:
    """Marker for a value of the wrong type (distinct from ``None``, a valid absence)."""


_BAD: Final = _Bad()


# --- value checks shared by every source -------------------------------------------


def _finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))


def _unit_interval(value: float) -> bool:
    return 0.0 <= value <= 1.0


def _non_negative(value: float) -> bool:
    return value >= 0.0


#: Extra checks on a value of the right type; failing one makes the value bad.
_FLOAT_CHECKS: Final[dict[str, Callable[[float], bool]]] = {
    "confidence": _unit_interval,
    "edit_ratio": _unit_interval,
    "cost_usd": _non_negative,
}
_STR_CHOICES: Final[dict[str, frozenset[str]]] = {
    "stage": frozenset(A.ALL_STAGES),
    "feedback_kind": frozenset(A.FEEDBACK_KINDS),
}


def _check_str(field: str, value: str) -> object:
    if field in CONTENT_FIELDS:
        return value[:MAX_CONTENT_CHARS] if len(value) > MAX_CONTENT_CHARS else value
    choices = _STR_CHOICES.get(field)
    if choices is not None and value not in choices:
        return _BAD
    return value


def _check_float(field: str, value: float) -> object:
    if not _finite(value):
        return _BAD
    check = _FLOAT_CHECKS.get(field)
    if check is not None and not check(value):
        return _BAD
    return value


def _python_value(field: str, kind: ValueKind, value: object) -> object:
    """Typed value of a Python attribute value (SDK spans, decoded JSON), or ``_BAD``."""
    if kind is ValueKind.STR:
        return _check_str(field, value) if isinstance(value, str) else _BAD
    if kind is ValueKind.BOOL:
        return value if isinstance(value, bool) else _BAD
    if kind is ValueKind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _BAD
        return _check_float(field, float(value))
    if kind is ValueKind.INT:
        return value if isinstance(value, int) and not isinstance(value, bool) else _BAD
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        return _BAD
    if kind is ValueKind.STR_LIST:
        return tuple(value) if all(isinstance(item, str) for item in value) else _BAD
    floats: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return _BAD
        number = float(item)
        if not _finite(number):
            return _BAD
        floats.append(number)
    return tuple(floats)


# --- SDK ReadableSpan ------------------------------------------------------------


def record_from_readable_span(span: ReadableSpan) -> SpanRecord:
    """Convert an ended SDK span (what a ``SpanProcessor.on_end`` receives)."""
    context = span.context
    parent = span.parent
    record = SpanRecord(
        trace_id=context.trace_id.to_bytes(16, "big") if context is not None else b"",
        span_id=context.span_id.to_bytes(8, "big") if context is not None else b"",
        parent_span_id=parent.span_id.to_bytes(8, "big") if parent is not None else b"",
        name=span.name,
        start_ns=span.start_time or 0,
        end_ns=span.end_time or 0,
        error=span.status.status_code is StatusCode.ERROR,
        links=tuple(
            (link.context.trace_id.to_bytes(16, "big"), link.context.span_id.to_bytes(8, "big"))
            for link in span.links
        ),
    )
    attributes = span.attributes
    collected: Collected | None = None
    if attributes:
        bad = 0
        # One pass over the span's own attributes: a membership test per known key
        # would cost a raised KeyError per absent key on the SDK's attribute mapping.
        fields = ATTRIBUTE_FIELDS
        for key in attributes:
            spec = fields.get(key)
            if spec is None:
                if key in FOREIGN_FIELDS:
                    collected = _collect_python(collected, key, attributes[key])
                continue
            field, kind = spec
            value = _python_value(field, kind, attributes[key])
            if value is _BAD:
                bad += 1
            else:
                setattr(record, field, value)
        record.bad_attributes = bad
        if collected is not None and record.stage is None and collected.wants_documents():
            for key in attributes:
                if key.startswith(INDEXED_STARTS):
                    _collect_python(collected, key, attributes[key])
    if collected is not None or (record.operation is not None and record.stage is None):
        apply(record, collected)
    return record


def _collect_python(collected: Collected | None, key: str, value: object) -> Collected | None:
    """Add one attribute of another convention (a Python value) to ``collected``."""
    spec = FOREIGN_FIELDS.get(key)
    if spec is not None:
        slot, kind = spec
        typed = _python_value(slot, kind, value)
        if collected is None:
            collected = Collected()
        if typed is _BAD:
            collected.bad += 1
        else:
            collected.add(slot, typed)
        return collected
    found = indexed_key(key)
    if found is None:
        return collected
    if collected is None:
        collected = Collected()
    collected.document(*found, value)
    return collected


# --- OTLP protobuf -----------------------------------------------------------------
#
# The hot path of the collector. With the upb runtime each attribute access costs a
# wrapper object, so the converter touches as little as it can: one pass over the
# attribute list, the key first, then only the value field that fits the expected
# kind. A non-default scalar (a non-empty string, ``True``, a non-zero double) can
# only come from that oneof field being set, so ``WhichOneof`` is called only for
# default-looking values, where the field may be unset or another type.

_STR, _STR_CHOICE, _BOOL, _FLOAT, _FLOAT_CHECKED, _INT, _STR_LIST, _FLOAT_LIST = range(8)


def _proto_code(field: str, kind: ValueKind) -> int:
    if kind is ValueKind.STR:
        return _STR_CHOICE if field in _STR_CHOICES or field in CONTENT_FIELDS else _STR
    if kind is ValueKind.FLOAT:
        return _FLOAT_CHECKED if field in _FLOAT_CHECKS else _FLOAT
    return {
        ValueKind.BOOL: _BOOL,
        ValueKind.INT: _INT,
        ValueKind.STR_LIST: _STR_LIST,
        ValueKind.FLOAT_LIST: _FLOAT_LIST,
    }[kind]


#: attribute key -> (record field, decoding code), built once from ATTRIBUTE_FIELDS.
_PROTO_FIELDS: Final[dict[str, tuple[str, int]]] = {
    key: (field, _proto_code(field, kind)) for key, (field, kind) in ATTRIBUTE_FIELDS.items()
}


def _proto_str_list(values: Any) -> object:
    strings = [item.string_value for item in values]
    if "" in strings:
        for item in values:
            if item.WhichOneof("value") != "string_value":
                return _BAD
    return tuple(strings)


def _proto_float_list(values: Any) -> object:
    floats: list[float] = []
    for item in values:
        number = item.double_value
        if not number:
            which = item.WhichOneof("value")
            if which == "int_value":
                number = float(item.int_value)
            elif which != "double_value":
                return _BAD
        elif not _finite(number):
            return _BAD
        floats.append(number)
    return tuple(floats)


def _proto_value(field: str, code: int, value: Any) -> object:
    """Typed value of an OTLP ``AnyValue`` for a field's decoding code, or ``_BAD``."""
    if code <= _STR_CHOICE:
        text = value.string_value
        if not text and value.WhichOneof("value") != "string_value":
            return _BAD
        return text if code == _STR else _check_str(field, text)
    if code == _BOOL:
        flag = value.bool_value
        if not flag and value.WhichOneof("value") != "bool_value":
            return _BAD
        return flag
    if code <= _FLOAT_CHECKED:
        number = value.double_value
        if not number:
            which = value.WhichOneof("value")
            if which == "int_value":
                number = float(value.int_value)
            elif which != "double_value":
                return _BAD
        return number if code == _FLOAT and _finite(number) else _check_float(field, number)
    if code == _INT:
        integer = value.int_value
        if not integer and value.WhichOneof("value") != "int_value":
            return _BAD
        return integer
    if value.WhichOneof("value") != "array_value":
        return _BAD
    values = value.array_value.values
    return _proto_str_list(values) if code == _STR_LIST else _proto_float_list(values)


def record_from_otlp_span(span: ProtoSpan) -> SpanRecord:
    """Convert an OTLP protobuf span; the collector calls this once per received span.

    Walks ``span.attributes`` once and decodes only the keys the core knows.
    Never raises on attribute values: wrong types are counted in ``bad_attributes``.
    """
    record = SpanRecord(
        span.trace_id,
        span.span_id,
        span.parent_span_id,
        span.name,
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        span.status.code == _STATUS_ERROR,
    )
    fields = _PROTO_FIELDS
    bad = 0
    collected: Collected | None = None
    for key_value in span.attributes:
        key = key_value.key
        spec = fields.get(key)
        if spec is None:
            if key in _FOREIGN_CODES:
                found = _proto_foreign(key, key_value.value)
                if found is not None:
                    collected = found.into(collected)
            continue
        field, code = spec
        value = _proto_value(field, code, key_value.value)
        if value is _BAD:
            bad += 1
        else:
            setattr(record, field, value)
    if bad:
        record.bad_attributes = bad
    if span.links:
        record.links = tuple((link.trace_id, link.span_id) for link in span.links)
    if collected is not None and record.stage is None and collected.wants_documents():
        for key_value in span.attributes:
            key = key_value.key
            if key.startswith(INDEXED_STARTS):
                found = _proto_foreign(key, key_value.value)
                if found is not None:
                    found.into(collected)
    if collected is not None or (record.operation is not None and record.stage is None):
        apply(record, collected)
    return record


#: key of another convention -> (slot, decoding code)
_FOREIGN_CODES: Final[dict[str, tuple[str, int]]] = {
    key: (slot, _proto_code(slot, kind)) for key, (slot, kind) in FOREIGN_FIELDS.items()
}


class _Foreign:
    """One decoded attribute of another convention: a slot of
    :class:`~llmspans.core.conventions.Collected` and its value, or an indexed
    document attribute. Immutable, so the slim decoder may cache it."""

    __slots__ = ("index", "part", "slot", "value")

    def __init__(self, slot: str, value: object, index: int = -1, part: int = PART_OTHER) -> None:
        self.slot = slot
        self.value = value
        self.index = index
        self.part = part

    def into(self, collected: Collected | None) -> Collected:
        if collected is None:
            collected = Collected()
        if self.index >= 0:
            collected.document(self.slot, self.index, self.part, self.value)
        elif self.value is _BAD:
            collected.bad += 1
        else:
            collected.add(self.slot, self.value)
        return collected


_SCALAR_FIELDS: Final = frozenset({"string_value", "int_value", "double_value", "bool_value"})


def _proto_foreign(key: str, value: Any) -> _Foreign | None:
    """The decoded attribute of another convention, or ``None`` for a key not read."""
    spec = _FOREIGN_CODES.get(key)
    if spec is not None:
        slot, code = spec
        decoded = _proto_value(slot, code, value)
        if isinstance(decoded, str):
            decoded = intern(decoded)
        return _Foreign(slot, decoded)
    found = indexed_key(key)
    if found is None:
        return None
    group, index, part = found
    if part == PART_OTHER:
        return _Foreign(group, None, index, part)
    which = value.WhichOneof("value")
    scalar = getattr(value, which) if which in _SCALAR_FIELDS else _BAD
    if isinstance(scalar, str):
        scalar = intern(scalar)
    return _Foreign(group, scalar, index, part)


# --- OTLP protobuf, slim schema -----------------------------------------------------
#
# The collector needs a dozen known attributes of each span and forwards the rest
# untouched. Parsing with the full OTLP schema makes upb build a Python-visible
# ``KeyValue`` and ``AnyValue`` for every attribute the converter walks past. The
# slim schema below has the same field numbers but declares ``Span.attributes`` as
# ``repeated bytes``: each attribute stays one encoded ``KeyValue``, its key is read
# from the bytes and only the known keys are decoded (with the full types and the
# same ``_proto_value`` as above). Resource and scope are ``bytes`` too (the
# collector only copies them). Every field the slim schema does not name (kind,
# events, trace state, ...) is kept by upb as an unknown field, so serialising a
# slim message gives the same spans back for forwarding.

_SLIM_PACKAGE: Final = "llmspans_slim_otlp"


def _build_slim_request() -> type[Message]:
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="llmspans/slim_otlp_trace.proto", package=_SLIM_PACKAGE, syntax="proto3"
    )
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
        descriptor = file.message_type.add(name=name)
        for field_name, number, field_type, label, type_name in fields:
            field = descriptor.field.add(
                name=field_name, number=number, type=field_type, label=label
            )
            if type_name:
                field.type_name = f".{_SLIM_PACKAGE}.{type_name}"
            elif field_name == "status":
                # The encoded Status, with presence (proto3 ``optional``), so an empty
                # status the sender set is forwarded as it came.
                field.proto3_optional = True
                field.oneof_index = len(descriptor.oneof_decl)
                descriptor.oneof_decl.add(name="_status")

    message(
        "Link",
        [("trace_id", 1, F.TYPE_BYTES, optional, ""), ("span_id", 2, F.TYPE_BYTES, optional, "")],
    )
    message(
        "Span",
        [
            ("trace_id", 1, F.TYPE_BYTES, optional, ""),
            ("span_id", 2, F.TYPE_BYTES, optional, ""),
            ("parent_span_id", 4, F.TYPE_BYTES, optional, ""),
            ("name", 5, F.TYPE_STRING, optional, ""),
            ("start_time_unix_nano", 7, F.TYPE_FIXED64, optional, ""),
            ("end_time_unix_nano", 8, F.TYPE_FIXED64, optional, ""),
            ("attributes", 9, F.TYPE_BYTES, repeated, ""),
            ("links", 13, F.TYPE_MESSAGE, repeated, "Link"),
            ("status", 15, F.TYPE_BYTES, optional, ""),
        ],
    )
    message(
        "ScopeSpans",
        [
            ("scope", 1, F.TYPE_BYTES, optional, ""),
            ("spans", 2, F.TYPE_MESSAGE, repeated, "Span"),
            ("schema_url", 3, F.TYPE_STRING, optional, ""),
        ],
    )
    message(
        "ResourceSpans",
        [
            ("resource", 1, F.TYPE_BYTES, optional, ""),
            ("scope_spans", 2, F.TYPE_MESSAGE, repeated, "ScopeSpans"),
            ("schema_url", 3, F.TYPE_STRING, optional, ""),
        ],
    )
    message(
        "ExportTraceServiceRequest",
        [("resource_spans", 1, F.TYPE_MESSAGE, repeated, "ResourceSpans")],
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{_SLIM_PACKAGE}.ExportTraceServiceRequest")
    )


#: ``ExportTraceServiceRequest`` with the slim schema: ``FromString`` the bytes of a
#: (validated) OTLP request, convert its spans with :class:`SlimDecoder`, serialise
#: it to forward it. ``resource`` and ``scope`` are the encoded messages.
SLIM_EXPORT_REQUEST: Final[Any] = _build_slim_request()

#: encoded ``KeyValue`` key prefix (tag 0x0A, one length byte, the key) of known keys
#: (llmspans' own and the other conventions' scalar keys)
_KNOWN_PREFIXES: Final[frozenset[bytes]] = frozenset(
    b"\x0a" + bytes([len(key.encode())]) + key.encode()
    for key in (*_PROTO_FIELDS, *_FOREIGN_CODES)
    if len(key.encode()) < 0x80
)
#: the encoded starts of the indexed document keys (after tag and length)
_INDEXED_WIRE_STARTS: Final = tuple(start.encode() for start in INDEXED_STARTS)
#: encoded key prefix of each known key -> (record field, decoding code)
_FIELDS_BY_PREFIX: Final[dict[bytes, tuple[str, int]]] = {
    b"\x0a" + bytes([len(key.encode())]) + key.encode(): spec
    for key, spec in _PROTO_FIELDS.items()
    if len(key.encode()) < 0x80
}
#: Encoded attributes up to this size have their decoded value cached.
_CACHED_BYTES: Final = 64


def _varint(raw: bytes, position: int) -> tuple[int, int]:
    """(position after, value) of the varint at ``position``; IndexError when cut short."""
    byte = raw[position]
    if byte < 0x80:
        return position + 1, byte
    value = byte & 0x7F
    shift = 7
    while True:
        position += 1
        byte = raw[position]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return position + 1, value
        shift += 7


def _array_content(raw: bytes, position: int) -> tuple[int, int] | None:
    """(start, end) of the elements when ``raw[position:]`` is exactly one ``value``
    field holding an ``array_value`` and nothing else; else ``None``."""
    end = len(raw)
    if raw[position] != 0x12:  # KeyValue.value
        return None
    position, length = _varint(raw, position + 1)
    if position + length != end or position >= end or raw[position] != 0x2A:  # array_value
        return None
    position, length = _varint(raw, position + 1)
    if position + length != end:
        return None
    return position, end


def _wire_strings(raw: bytes, position: int, end: int) -> tuple[str, ...] | None:
    """The strings of an array whose every element is one short ``string_value``
    (interned: the same ids recur across a run's spans)."""
    strings: list[str] = []
    append = strings.append
    while position < end:
        # element: 0x0A, length, then the AnyValue: 0x0A, length - 2, the string
        length = raw[position + 1]
        if (
            raw[position] != 0x0A
            or length >= 0x80
            or length < 2
            or raw[position + 2] != 0x0A
            or raw[position + 3] != length - 2
        ):
            return None
        append(intern(raw[position + 4 : position + 2 + length].decode()))
        position += 2 + length
    return tuple(strings) if position == end else None


_DOUBLE_ELEMENT: Final = 11  # 0x0A 0x09 (element), 0x21 (double_value), 8 bytes
_DOUBLE_FORMATS: dict[int, struct.Struct] = {}


def _wire_doubles(raw: bytes, position: int, end: int) -> object:
    """The numbers of an array whose every element is one ``double_value``, ``_BAD``
    when one is not finite, ``None`` for any other layout."""
    count, rest = divmod(end - position, _DOUBLE_ELEMENT)
    if rest or not count:
        return None
    body = raw[position:end]
    if (
        body[0::_DOUBLE_ELEMENT] != b"\x0a" * count
        or body[1::_DOUBLE_ELEMENT] != b"\x09" * count
        or body[2::_DOUBLE_ELEMENT] != b"\x21" * count
    ):
        return None
    layout = _DOUBLE_FORMATS.get(count)
    if layout is None:
        layout = struct.Struct("<" + "3xd" * count)
        if len(_DOUBLE_FORMATS) < 256:
            _DOUBLE_FORMATS[count] = layout
    numbers: tuple[float, ...] = layout.unpack(body)
    return numbers if all(map(math.isfinite, numbers)) else _BAD


def _wire_list(raw: bytes, prefix: int, code: int) -> object:
    """A known list attribute decoded straight from its encoded ``KeyValue`` when it
    has the plain layout every SDK writes; ``None`` to take the general path."""
    try:
        content = _array_content(raw, prefix)
        if content is None:
            return None
        start, end = content
        if code == _STR_LIST:
            return _wire_strings(raw, start, end)
        return _wire_doubles(raw, start, end)
    except (IndexError, UnicodeDecodeError):
        return None


#: the encoded ``Status`` every SDK writes for an error: ``code`` = ERROR and nothing else
_ERROR_STATUS: Final = b"\x18\x02"


def _status_error(status: bytes) -> bool:
    """Whether an encoded ``Status`` has code ERROR. The code is a varint of field 3,
    at least two bytes: anything that short is either exactly the usual error
    encoding or has no ERROR code; longer ones (with a message) are parsed."""
    if len(status) <= 2:
        return status == _ERROR_STATUS
    return bool(ProtoStatus.FromString(status).code == _STATUS_ERROR)


class SlimDecoder:
    """Converts spans of a :data:`SLIM_EXPORT_REQUEST` into records.

    Gives exactly what :func:`record_from_otlp_span` gives for the same span. Short
    attributes (stage, pipeline, model names, flags, numbers that repeat) are
    decoded once per distinct encoding: their value is cached by the encoded
    ``KeyValue`` bytes, at most ``cache_size`` of them (the cache starts over when
    full). Id lists and long values are decoded every time. Strings that repeat
    across spans (span names, stage and pipeline names, document ids) are interned,
    so the records of in-flight spans share them. One decoder per collector; not
    thread-safe.

    ``max_ids``: a list attribute (ids, scores) longer than this keeps its first
    ``max_ids`` elements, so that what a span holds and what attribution does with
    it stay bounded; the elements left out are counted in ``ids_truncated``.
    """

    def __init__(self, cache_size: int = 65_536, max_ids: int | None = None) -> None:
        self.cache_size = cache_size
        self.max_ids = max_ids
        self.ids_truncated = 0
        # encoded KeyValue -> (record field, typed value or _BAD); field "" for keys
        # the core does not read, with a _Foreign value for those of another convention
        self._cache: dict[bytes, tuple[str, Any]] = {}

    def _decode(self, raw: bytes) -> tuple[str, Any]:
        if raw[0] == 0x0A and raw[1] < 0x80:
            prefix = 2 + raw[1]
            spec = _FIELDS_BY_PREFIX.get(raw[:prefix])
            if spec is not None and spec[1] >= _STR_LIST and len(raw) > prefix:
                value = _wire_list(raw, prefix, spec[1])
                if value is not None:
                    return spec[0], value
        key_value = KeyValue.FromString(raw)
        key = key_value.key
        spec = _PROTO_FIELDS.get(key)
        if spec is None:
            # ("", None) for a key the core does not read; ("", _Foreign) for one of
            # another convention: the record loop looks at it only after the test
            # that skips unknown keys, so a span without any costs nothing more.
            # Indexed document keys are read by _documents, on retrievers only.
            if key in _FOREIGN_CODES:
                return "", _proto_foreign(key, key_value.value)
            return "", None
        field, code = spec
        decoded = _proto_value(field, code, key_value.value)
        if isinstance(decoded, str):
            decoded = intern(decoded)
        elif code == _STR_LIST and isinstance(decoded, tuple):
            decoded = tuple(map(intern, decoded))
        return field, decoded

    def record(self, span: Any) -> SpanRecord:
        """The record of one slim ``Span``; never raises on attribute values."""
        status = span.status
        record = SpanRecord(
            span.trace_id,
            span.span_id,
            span.parent_span_id,
            intern(span.name),
            span.start_time_unix_nano,
            span.end_time_unix_nano,
            status == _ERROR_STATUS or (len(status) > 2 and _status_error(status)),
        )
        cache = self._cache
        max_ids = self.max_ids
        bad = 0
        collected: Collected | None = None
        for raw in span.attributes:
            if len(raw) <= _CACHED_BYTES:
                found = cache.get(raw)
                if found is None:
                    found = self._decode(raw)
                    # Scalars repeat from span to span; id lists mostly do not, so
                    # they are not cached (nor does a load of identical lists
                    # look cheaper than real traffic).
                    if not isinstance(found[1], tuple):
                        if len(cache) >= self.cache_size:
                            cache.clear()
                        cache[raw] = found
            elif raw[0] == 0x0A and raw[1] < 0x80 and raw[: 2 + raw[1]] not in _KNOWN_PREFIXES:
                # A long attribute the core does not read (content, payloads): only
                # its key is looked at.
                continue
            else:
                found = self._decode(raw)
            field, value = found
            if not field:
                if value is not None:
                    collected = value.into(collected)
                continue
            if value is _BAD:
                bad += 1
            else:
                if type(value) is tuple and max_ids is not None and len(value) > max_ids:
                    self.ids_truncated += len(value) - max_ids
                    value = value[:max_ids]
                setattr(record, field, value)
        if bad:
            record.bad_attributes = bad
        if span.links:
            record.links = tuple((link.trace_id, link.span_id) for link in span.links)
        if collected is not None and record.stage is None and collected.wants_documents():
            _slim_documents(span.attributes, collected)
        if collected is not None or (record.operation is not None and record.stage is None):
            apply(record, collected)
        return record


def _slim_documents(attributes: Any, collected: Collected) -> None:
    """The second pass over a retriever's or reranker's encoded attributes: its indexed
    documents. The key alone says whether the value is read (id, score) or only tells
    that the document exists (content, metadata: never decoded)."""
    for raw in attributes:
        if raw[0] != 0x0A or raw[1] >= 0x80 or not raw.startswith(_INDEXED_WIRE_STARTS, 2):
            continue
        try:
            found = indexed_key(raw[2 : 2 + raw[1]].decode())
        except UnicodeDecodeError:
            continue
        if found is None:
            continue
        group, index, part = found
        if part == PART_OTHER:
            collected.document(group, index, part, None)
            continue
        key_value = KeyValue.FromString(raw)
        decoded = _proto_foreign(key_value.key, key_value.value)
        if decoded is not None:
            decoded.into(collected)


# --- OTLP JSON ---------------------------------------------------------------------


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    """A field by its lowerCamelCase name (the OTLP JSON spelling) or snake_case."""
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _expect_object(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _expect_list(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected an array, got {type(value).__name__}")
    return value


def _json_id(value: Any, size: int, path: str, *, required: bool) -> bytes:
    """Decode a trace or span id: hex as OTLP JSON says; base64 (protobuf's own JSON
    mapping, as ``json_format.MessageToJson`` writes it) is accepted too."""
    if value is None or value == "":
        if required:
            raise ValueError(f"{path}: missing, expected {size * 2} hex characters")
        return b""
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected {size * 2} hex characters, got {type(value).__name__}")
    raw: bytes | None = None
    if len(value) == size * 2:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = None
    elif len(value) == 4 * math.ceil(size / 3):
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        raw = decoded if len(decoded) == size else None
    if raw is None:
        raise ValueError(f"{path}: expected {size * 2} hex characters, got {value!r}")
    if required and not any(raw):
        raise ValueError(f"{path}: an all-zero id is invalid")
    return raw


def _json_uint(value: Any, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"{path}: expected an integer, got a bool")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{path}: expected an integer, got {value!r}") from None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise ValueError(f"{path}: expected an integer, got {value!r}")
    if number < 0:
        raise ValueError(f"{path}: expected a non-negative integer, got {number}")
    return number


_STATUS_NAMES: Final[dict[str, int]] = {
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}


def _json_status_error(status: Any, path: str) -> bool:
    if status is None:
        return False
    code = _expect_object(status, path).get("code")
    if code is None:
        return False
    if isinstance(code, str):
        if code in _STATUS_NAMES:
            return _STATUS_NAMES[code] == _STATUS_ERROR
        if code.isdigit():
            return int(code) == _STATUS_ERROR
        raise ValueError(f"{path}.code: unknown status code {code!r}")
    if isinstance(code, int) and not isinstance(code, bool):
        return code == _STATUS_ERROR
    raise ValueError(f"{path}.code: expected an integer or a status code name, got {code!r}")


_NON_FINITE: Final[dict[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}


def _json_scalar(key: str, decoded: Any) -> object:
    """Decode the payload of a scalar ``AnyValue`` field, or ``_BAD``."""
    if key in ("stringValue", "string_value"):
        return decoded if isinstance(decoded, str) else _BAD
    if key in ("boolValue", "bool_value"):
        return decoded if isinstance(decoded, bool) else _BAD
    if key in ("intValue", "int_value"):
        if isinstance(decoded, int) and not isinstance(decoded, bool):
            return decoded
        if isinstance(decoded, str):
            try:
                return int(decoded)
            except ValueError:
                return _BAD
        return _BAD
    if key in ("doubleValue", "double_value"):
        if isinstance(decoded, bool):
            return _BAD
        if isinstance(decoded, int | float):
            return float(decoded)
        if isinstance(decoded, str):
            if decoded in _NON_FINITE:
                return _NON_FINITE[decoded]
            try:
                return float(decoded)
            except ValueError:
                return _BAD
    return _BAD


_ARRAY_KEYS: Final = ("arrayValue", "array_value")


def _json_any_value(value: Any, path: str) -> object:
    """Decode an OTLP JSON ``AnyValue`` into a Python value (a list for an array).

    Returns ``_BAD`` for a value that is well-formed but unusable for a known
    attribute (a kvlist, bytes, a nested array, an int that is no integer); raises
    ``ValueError`` on bad structure. Arrays are read one level deep only: the
    attributes the core reads are flat, and deep input must not recurse.
    """
    value = _expect_object(value, path)
    for key, decoded in value.items():
        if key in _ARRAY_KEYS:
            array = _expect_object(decoded, f"{path}.{key}")
            items = _expect_list(array.get("values"), f"{path}.{key}.values")
            converted: list[object] = []
            for index, raw in enumerate(items):
                item = _expect_object(raw, f"{path}.{key}.values[{index}]")
                if len(item) != 1:
                    return _BAD
                ((item_key, payload),) = item.items()
                scalar = _BAD if item_key in _ARRAY_KEYS else _json_scalar(item_key, payload)
                if scalar is _BAD:
                    return _BAD
                converted.append(scalar)
            return converted
        scalar = _json_scalar(key, decoded)
        if scalar is not _BAD or key in _SCALAR_KEYS:
            return scalar
    return _BAD


_SCALAR_KEYS: Final = frozenset(
    {
        "stringValue",
        "string_value",
        "boolValue",
        "bool_value",
        "intValue",
        "int_value",
        "doubleValue",
        "double_value",
        "kvlistValue",
        "kvlist_value",
        "bytesValue",
        "bytes_value",
    }
)


def _json_span(span: Any, path: str) -> SpanRecord:
    span = _expect_object(span, path)
    record = SpanRecord(
        trace_id=_json_id(_get(span, "traceId", "trace_id"), 16, f"{path}.traceId", required=True),
        span_id=_json_id(_get(span, "spanId", "span_id"), 8, f"{path}.spanId", required=True),
        parent_span_id=_json_id(
            _get(span, "parentSpanId", "parent_span_id"), 8, f"{path}.parentSpanId", required=False
        ),
        start_ns=_json_uint(
            _get(span, "startTimeUnixNano", "start_time_unix_nano"), f"{path}.startTimeUnixNano"
        ),
        end_ns=_json_uint(
            _get(span, "endTimeUnixNano", "end_time_unix_nano"), f"{path}.endTimeUnixNano"
        ),
        error=_json_status_error(span.get("status"), f"{path}.status"),
    )
    name = span.get("name", "")
    if not isinstance(name, str):
        raise ValueError(f"{path}.name: expected a string, got {type(name).__name__}")
    record.name = name
    bad = 0
    collected: Collected | None = None
    for index, item in enumerate(_expect_list(span.get("attributes"), f"{path}.attributes")):
        attribute_path = f"{path}.attributes[{index}]"
        attribute = _expect_object(item, attribute_path)
        key = attribute.get("key")
        if not isinstance(key, str):
            raise ValueError(f"{attribute_path}.key: expected a string")
        spec = ATTRIBUTE_FIELDS.get(key)
        if spec is None:
            if key in FOREIGN_FIELDS or key.startswith(INDEXED_STARTS):
                raw = attribute.get("value")
                decoded = _BAD if raw is None else _json_any_value(raw, f"{attribute_path}.value")
                if decoded is _BAD:
                    collected = collected or Collected()
                    collected.bad += 1
                else:
                    collected = _collect_python(collected, key, decoded)
            continue
        field, kind = spec
        raw = attribute.get("value")
        decoded = _BAD if raw is None else _json_any_value(raw, f"{attribute_path}.value")
        value = _BAD if decoded is _BAD else _python_value(field, kind, decoded)
        if value is _BAD:
            bad += 1
        else:
            setattr(record, field, value)
    record.bad_attributes = bad
    links: list[tuple[bytes, bytes]] = []
    for index, item in enumerate(_expect_list(span.get("links"), f"{path}.links")):
        link_path = f"{path}.links[{index}]"
        link = _expect_object(item, link_path)
        trace_id = _get(link, "traceId", "trace_id")
        span_id = _get(link, "spanId", "span_id")
        links.append(
            (
                _json_id(trace_id, 16, f"{link_path}.traceId", required=True),
                _json_id(span_id, 8, f"{link_path}.spanId", required=True),
            )
        )
    record.links = tuple(links)
    if collected is not None or (record.operation is not None and record.stage is None):
        apply(record, collected)
    return record


def _json_spans(request: Any) -> Iterator[tuple[str, Any]]:
    """Walk an export request down to its spans: (path, span) pairs; raises ``ValueError``
    on bad structure above the span level (when the walk reaches it)."""
    request = _expect_object(request, "request")
    resource_spans = _expect_list(_get(request, "resourceSpans", "resource_spans"), "resourceSpans")
    for r_index, r_item in enumerate(resource_spans):
        r_path = f"resourceSpans[{r_index}]"
        resource = _expect_object(r_item, r_path)
        scopes = _get(resource, "scopeSpans", "scope_spans")
        scope_key = "scopeSpans"
        if scopes is None:
            # The name before OTLP 0.15, still written by some old file exporters.
            scopes = _get(resource, "instrumentationLibrarySpans", "instrumentation_library_spans")
            scope_key = "instrumentationLibrarySpans"
        for s_index, s_item in enumerate(_expect_list(scopes, f"{r_path}.{scope_key}")):
            s_path = f"{r_path}.{scope_key}[{s_index}]"
            scope = _expect_object(s_item, s_path)
            for index, span in enumerate(_expect_list(scope.get("spans"), f"{s_path}.spans")):
                yield f"{s_path}.spans[{index}]", span


def records_from_otlp_json(request: Mapping[str, Any]) -> list[SpanRecord]:
    """Convert one ``ExportTraceServiceRequest`` in OTLP JSON encoding.

    Accepts the specification's lowerCamelCase keys and snake_case; hex ids (base64
    too); enums as integers or names; 64-bit integers as strings or numbers.
    Raises ``ValueError`` naming the path of the first malformed value, e.g.
    ``resourceSpans[0].scopeSpans[1].spans[3].traceId: expected 32 hex characters``.
    """
    return [_json_span(span, path) for path, span in _json_spans(request)]


def _salvage(request: Any) -> tuple[list[SpanRecord], list[str]]:
    """Every well-formed span of a request that is malformed somewhere, and the errors.

    Used by the lenient line reader, so one bad span does not cost the valid spans
    next to it. Structure that cannot be walked (a resource that is no object) ends
    the walk of that request; what was read before it is kept.
    """
    records: list[SpanRecord] = []
    errors: list[str] = []
    spans = _json_spans(request)
    while True:
        try:
            path, span = next(spans)
        except StopIteration:
            break
        except ValueError as error:
            errors.append(str(error))
            break
        try:
            records.append(_json_span(span, path))
        except ValueError as error:
            errors.append(str(error))
    return records, errors


def _not_a_trace_request(request: Any) -> str | None:
    """Why a line that is valid JSON is still no trace export request, or ``None``.

    An object with other keys and no ``resourceSpans`` is JSON of some other kind (a
    log record, metrics, a config): counting it as zero spans would hide that the
    file is not what was meant. ``{}`` is an empty request, as protobuf writes one.
    """
    if not isinstance(request, dict) or not request:
        return None
    if "resourceSpans" in request or "resource_spans" in request:
        return None
    keys = sorted(str(key) for key in request)
    shown = ", ".join(keys[:5]) + (", ..." if len(keys) > 5 else "")
    return f"valid JSON but not an OTLP trace export request: no resourceSpans (keys: {shown})"


def iter_otlp_json_lines(
    lines: Iterable[str],
    on_error: Callable[[int, str], None] | None = None,
) -> Iterator[SpanRecord]:
    """Records from OTLP JSON lines (one export request per line; blank lines skipped).

    A bad line (not JSON, malformed OTLP, or JSON that is no trace export request,
    such as ``{"a": 1}``) raises ``ValueError`` with its 1-based line number, unless
    ``on_error(line_number, message)`` is given: then each bad line is reported there
    once, its well-formed spans are still used, and every valid line is read.
    """
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            request = json.loads(text)
        except json.JSONDecodeError as error:
            message = f"invalid JSON: {error}"
        except RecursionError:
            message = "invalid JSON: nested too deeply"
        else:
            foreign = _not_a_trace_request(request)
            if foreign is not None:
                message = foreign
            else:
                try:
                    records = records_from_otlp_json(request)
                except ValueError as error:
                    if on_error is None:
                        raise ValueError(f"line {number}: {error}") from None
                    records, errors = _salvage(request)
                    skipped = f"{len(errors)} malformed part(s) skipped" if len(errors) > 1 else ""
                    kept = f"{len(records)} valid span(s) of this line kept" if records else ""
                    note = "; ".join(part for part in (skipped, kept) if part)
                    on_error(number, f"{error}" + (f" ({note})" if note else ""))
                yield from records
                continue
        if on_error is None:
            raise ValueError(f"line {number}: {message}")
        on_error(number, message)


def iter_otlp_json_file(
    path: str | Path,
    on_error: Callable[[int, str], None] | None = None,
) -> Iterator[SpanRecord]:
    """Records from an OTLP JSON lines file (see :func:`iter_otlp_json_lines`)."""
    with Path(path).open(encoding="utf-8") as lines:
        yield from iter_otlp_json_lines(lines, on_error)
