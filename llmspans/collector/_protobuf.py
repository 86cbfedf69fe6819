"""OTLP protobuf spans into :class:`~llmspans.core.records.SpanRecord`: the collector's decoders.

* :class:`SlimDecoder`: the records of a request parsed with the slim schema
  :data:`SLIM_EXPORT_REQUEST` (the collector's hot path: attributes stay encoded and
  only the known keys are decoded).
* :func:`record_from_otlp_span`: the same record from a span of the full OTLP
  schema (it walks the attribute list once and reads only the keys listed in
  :data:`~llmspans.core.records.ATTRIBUTE_FIELDS`); the reference the slim decoder
  is held to.

The value checks, the other conventions' keys and the records are the core's
(:mod:`llmspans.core.convert`, :mod:`llmspans.core.conventions`); only the wire
format is read here. Attribute values of the wrong type are never an error: they
are counted in ``SpanRecord.bad_attributes``.
"""

from __future__ import annotations

import math
import struct
from sys import intern
from typing import TYPE_CHECKING, Any, Final

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as _ProtoSpanType
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus

from llmspans.core.conventions import (
    FOREIGN_FIELDS,
    INDEXED_STARTS,
    PART_OTHER,
    RESULT_EVENT,
    RESULT_ID,
    RESULT_SCORE,
    Collected,
    apply,
    indexed_key,
)
from llmspans.core.convert import (
    BAD,
    FLOAT_CHECKS,
    STATUS_ERROR,
    STR_CHOICES,
    check_float,
    check_str,
    finish_record,
    finite,
)
from llmspans.core.records import ATTRIBUTE_FIELDS, CONTENT_FIELDS, SpanRecord, ValueKind

if TYPE_CHECKING:
    from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

__all__ = ["SLIM_EXPORT_REQUEST", "SlimDecoder", "key_prefix", "record_from_otlp_span"]


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
        return _STR_CHOICE if field in STR_CHOICES or field in CONTENT_FIELDS else _STR
    if kind is ValueKind.FLOAT:
        return _FLOAT_CHECKED if field in FLOAT_CHECKS else _FLOAT
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
                return BAD
    return tuple(strings)


def _proto_number(value: Any) -> float | None:
    """A number attribute value: a double, or an integer read as one; ``None`` for
    any other type. A non-zero double can only come from ``double_value`` being set."""
    number: float = value.double_value
    if not number:
        which = value.WhichOneof("value")
        if which == "int_value":
            return float(value.int_value)
        if which != "double_value":
            return None
    return number


def _proto_float_list(values: Any) -> object:
    floats: list[float] = []
    for item in values:
        number = _proto_number(item)
        if number is None or not finite(number):
            return BAD
        floats.append(number)
    return tuple(floats)


def _proto_value(field: str, code: int, value: Any) -> object:
    """Typed value of an OTLP ``AnyValue`` for a field's decoding code, or ``BAD``."""
    if code <= _STR_CHOICE:
        text = value.string_value
        if not text and value.WhichOneof("value") != "string_value":
            return BAD
        return text if code == _STR else check_str(field, text)
    if code == _BOOL:
        flag = value.bool_value
        if not flag and value.WhichOneof("value") != "bool_value":
            return BAD
        return flag
    if code <= _FLOAT_CHECKED:
        number = _proto_number(value)
        if number is None:
            return BAD
        return number if code == _FLOAT and finite(number) else check_float(field, number)
    if code == _INT:
        integer = value.int_value
        if not integer and value.WhichOneof("value") != "int_value":
            return BAD
        return integer
    if value.WhichOneof("value") != "array_value":
        return BAD
    values = value.array_value.values
    return _proto_str_list(values) if code == _STR_LIST else _proto_float_list(values)


def record_from_otlp_span(span: ProtoSpan) -> SpanRecord:
    """Convert an OTLP protobuf span (the reference :class:`SlimDecoder` is held to).

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
        span.status.code == STATUS_ERROR,
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
        if value is BAD:
            bad += 1
        else:
            setattr(record, field, value)
    _bad_and_links(record, bad, span.links)
    if collected is not None and record.stage is None and collected.wants_documents():
        for key_value in span.attributes:
            key = key_value.key
            if key.startswith(INDEXED_STARTS):
                found = _proto_foreign(key, key_value.value)
                if found is not None:
                    found.into(collected)
    if collected is not None and record.stage is None and collected.wants_results(record.name):
        _proto_results(span.events, collected)
    finish_record(record, collected)
    return record


def _proto_results(events: Any, collected: Collected) -> None:
    """The result events of an OpenLLMetry vector-store query (OTLP ``Span.Event``s):
    each one's id and score; bounded by :meth:`Collected.result`."""
    for event in events:
        if event.name != RESULT_EVENT:
            continue
        document_id: object = None
        score: object = None
        for key_value in event.attributes:
            if key_value.key == RESULT_ID:
                document_id = _proto_scalar(key_value.value)
            elif key_value.key == RESULT_SCORE:
                score = _proto_scalar(key_value.value)
        if not collected.result(document_id, score):
            return


def _proto_scalar(value: Any) -> object:
    """A scalar ``AnyValue`` as a Python value (``None`` for anything else)."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bool_value":
        return value.bool_value
    return None


#: ``Span.events`` (field 11, length-delimited) and its message, for the slim decoder
_SPAN_EVENTS: Final = 11
_LENGTH_DELIMITED: Final = 2
_PROTO_EVENT: Final = _ProtoSpanType.Event


def _slim_events(span: Any) -> Any:
    """The events of a slim ``Span``, decoded one at a time from its unknown fields."""
    unknown = UnknownFieldSet(span)
    for index in range(len(unknown)):
        field = unknown[index]
        if field.field_number == _SPAN_EVENTS and field.wire_type == _LENGTH_DELIMITED:
            yield _PROTO_EVENT.FromString(field.data)


def _bad_and_links(record: SpanRecord, bad: int, links: Any) -> None:
    """The count of wrongly typed attributes and the links (either schema's)."""
    if bad:
        record.bad_attributes = bad
    if links:
        record.links = tuple((link.trace_id, link.span_id) for link in links)


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
        elif self.value is BAD:
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
    scalar = getattr(value, which) if which in _SCALAR_FIELDS else BAD
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


def key_prefix(key: str) -> bytes:
    """The encoded start of a ``KeyValue`` with this key: tag 0x0A, the length in one
    byte, the key. Keys of 128 bytes or more take a longer length: ``ValueError``."""
    raw = key.encode()
    if len(raw) >= 0x80:
        raise ValueError(f"no one-byte length for a key of {len(raw)} bytes")
    return b"\x0a" + bytes([len(raw)]) + raw


def _short(key: str) -> bool:
    return len(key.encode()) < 0x80


#: encoded ``KeyValue`` key prefix of known keys (llmspans' own and the other
#: conventions' scalar keys)
_KNOWN_PREFIXES: Final[frozenset[bytes]] = frozenset(
    key_prefix(key) for key in (*_PROTO_FIELDS, *_FOREIGN_CODES) if _short(key)
)
#: the encoded starts of the indexed document keys (after tag and length)
_INDEXED_WIRE_STARTS: Final = tuple(start.encode() for start in INDEXED_STARTS)
#: encoded key prefix of each known key -> (record field, decoding code)
_FIELDS_BY_PREFIX: Final[dict[bytes, tuple[str, int]]] = {
    key_prefix(key): spec for key, spec in _PROTO_FIELDS.items() if _short(key)
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
    (interned: the same ids recur across a run's spans).

    An all-ASCII array (ids usually are; the framing bytes below 0x80 always are) is
    decoded once and its strings cut from the text: a bytes slice decoded per element
    costs about four times a str slice.
    """
    body = raw[position:end]
    if not body.isascii():
        return _wire_strings_utf8(raw, position, end)
    text = body.decode("ascii")
    strings: list[str] = []
    append = strings.append
    at = 0
    size = len(body)
    while at < size:
        # element: 0x0A, length, then the AnyValue: 0x0A, length - 2, the string
        # (a length under 2 fails the last test: no byte is negative)
        length = body[at + 1]
        if body[at] != 0x0A or body[at + 2] != 0x0A or body[at + 3] != length - 2:
            return None
        append(intern(text[at + 4 : at + 2 + length]))
        at += 2 + length
    return tuple(strings) if at == size else None


def _wire_strings_utf8(raw: bytes, position: int, end: int) -> tuple[str, ...] | None:
    """:func:`_wire_strings` for an array holding non-ASCII text: element by element."""
    strings: list[str] = []
    append = strings.append
    while position < end:
        length = raw[position + 1]
        if (
            raw[position] != 0x0A
            or length >= 0x80
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
    """The numbers of an array whose every element is one ``double_value``, ``BAD``
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
    return numbers if all(map(math.isfinite, numbers)) else BAD


def _wire_list(raw: bytes, prefix: int, code: int) -> object:
    """A known list attribute decoded straight from its encoded ``KeyValue`` when it
    has the plain layout every SDK writes; ``None`` to take the general path."""
    try:
        end = len(raw)
        if raw[prefix + 1] < 0x80 and raw[prefix + 3] < 0x80:
            # _array_content for one-byte lengths (an array under 128 bytes), inline
            if (
                raw[prefix] != 0x12  # KeyValue.value
                or prefix + 2 + raw[prefix + 1] != end
                or raw[prefix + 2] != 0x2A  # array_value
                or prefix + 4 + raw[prefix + 3] != end
            ):
                return None
            start = prefix + 4
        else:
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
    return bool(ProtoStatus.FromString(status).code == STATUS_ERROR)


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
        #: entries of the id and score lists of the last record decoded (the
        #: collector's in-flight byte estimate counts them without another pass)
        self.list_items = 0
        # encoded KeyValue -> (record field, typed value or BAD); field "" for keys
        # the core does not read, with a _Foreign value for those of another convention
        self._cache: dict[bytes, tuple[str, Any]] = {}

    def _decode(self, raw: bytes) -> tuple[str, Any]:
        if raw[0] == 0x0A and raw[1] < 0x80:
            prefix = 2 + raw[1]
            spec = _FIELDS_BY_PREFIX.get(raw[:prefix])
            if spec is not None and spec[1] >= _STR_LIST and len(raw) > prefix:
                value = _wire_list(raw, prefix, spec[1])
                if value is not None:
                    return ("", BAD) if value is BAD else (spec[0], value)
        return self._decode_message(raw)

    def _decode_message(self, raw: bytes) -> tuple[str, Any]:
        """:meth:`_decode` without the plain-layout list path: the ``KeyValue`` parsed."""
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
        if decoded is BAD:
            # no field: the record loop sets a value only when there is a field
            return "", BAD
        if isinstance(decoded, str):
            decoded = intern(decoded)
        elif code == _STR_LIST and isinstance(decoded, tuple):
            decoded = tuple(map(intern, decoded))
        return field, decoded

    def _set_list(self, record: SpanRecord, found: tuple[str, Any]) -> int:
        """Set an id or score list on ``record``, cut to ``max_ids``; its length."""
        field, value = found
        max_ids = self.max_ids
        if max_ids is not None and len(value) > max_ids:
            self.ids_truncated += len(value) - max_ids
            value = value[:max_ids]
        setattr(record, field, value)
        return len(value)

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
        items = 0
        collected: Collected | None = None
        for raw in span.attributes:
            if len(raw) <= _CACHED_BYTES:
                found = cache.get(raw)
                if found is None:
                    found = self._decode(raw)
                    # Scalars repeat from span to span; id lists mostly do not, so
                    # they are not cached (nor does a load of identical lists
                    # look cheaper than real traffic).
                    if type(found[1]) is tuple:
                        items += self._set_list(record, found)
                        continue
                    if len(cache) >= self.cache_size:
                        cache.clear()
                    cache[raw] = found
                # A cached entry holds a field and its scalar, or no field: a key the
                # core does not read (None), a value of the wrong type (BAD) or a key
                # of another convention. No list to bound here.
                field, value = found
                if field:
                    setattr(record, field, value)
                elif value is not None:
                    if value is BAD:
                        bad += 1
                    else:
                        collected = value.into(collected)
                continue
            if raw[0] == 0x0A and raw[1] < 0x80:
                prefix = 2 + raw[1]
                key = raw[:prefix]
                if key not in _KNOWN_PREFIXES:
                    # A long attribute the core does not read (content, payloads):
                    # only its key is looked at.
                    continue
                spec = _FIELDS_BY_PREFIX.get(key)
                if spec is not None and spec[1] >= _STR_LIST and len(raw) > prefix:
                    # An id or score list in the plain layout (what _decode would
                    # try first), read here: one call less per list.
                    found = (spec[0], _wire_list(raw, prefix, spec[1]))
                    if found[1] is None:
                        # another layout: the general path, without trying this again
                        found = self._decode_message(raw)
                else:
                    found = self._decode_message(raw)
            else:
                found = self._decode_message(raw)
            field, value = found
            if value is BAD:
                field = ""
            if not field:
                if value is BAD:
                    bad += 1
                elif value is not None:
                    collected = value.into(collected)
            elif type(value) is tuple:
                # _set_list, written out: id lists are long, and come this way
                if max_ids is not None and len(value) > max_ids:
                    self.ids_truncated += len(value) - max_ids
                    value = value[:max_ids]
                items += len(value)
                setattr(record, field, value)
            else:
                setattr(record, field, value)
        # written out (not _bad_and_links): once per span on the collector's hot path
        if bad:
            record.bad_attributes = bad
        links = span.links
        if links:
            record.links = tuple((link.trace_id, link.span_id) for link in links)
        # finish_record written out: once per span on the collector's hot path
        if collected is not None:
            if record.stage is None:
                if collected.wants_documents():
                    _slim_documents(span.attributes, collected)
                if collected.wants_results(record.name):
                    # The slim schema leaves events out (upb keeps them as unknown
                    # fields): decoded on vector-store queries only.
                    _proto_results(_slim_events(span), collected)
            apply(record, collected)
        elif record.stage is None and record.operation is not None:
            apply(record, None)
        self.list_items = items
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
