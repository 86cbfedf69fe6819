"""Pure conversion of decoded span data into :class:`~llmspans.core.records.SpanRecord`.

What every span source shares, and the one source the core reads itself:

* the value checks (:func:`python_value`, :func:`check_str`, :func:`check_float`):
  which typed value a known attribute holds, or :data:`BAD` for a value of the
  wrong type;
* :func:`read_attributes`: a record's fields from attributes held as Python values
  (an SDK span's, as the embedded mode reads them in ``llmspans.embedded``);
* :func:`records_from_otlp_json`: the records of one OTLP JSON
  ``ExportTraceServiceRequest`` already decoded from its text
  (:func:`salvage_otlp_json` keeps the well-formed spans of a malformed one).

The adapters around the core hold the rest: the OTLP protobuf decoders the collector
runs (``llmspans.collector._protobuf``), the SDK span adapter of the embedded mode
(``llmspans.embedded``) and the readers of OTLP JSON lines files
(``llmspans._tracefiles``). No I/O here.

Every converter also reads the few keys of the other conventions (OpenTelemetry
``gen_ai.*``, OpenInference, OpenLLMetry) that :mod:`llmspans.core.conventions`
lists, and lets :func:`finish_record` fill the record from them; a span without
those keys pays nothing for it.

Structural problems (an id that is not hex, a span that is not an object) raise
``ValueError`` naming the path of the bad value. A *known attribute* with a value
of the wrong type (a string where a bool belongs, a NaN confidence, a mixed array)
is not an error: it is skipped and counted in ``SpanRecord.bad_attributes``.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final

from llmspans import _attributes as A
from llmspans.core.conventions import (
    FOREIGN_FIELDS,
    INDEXED_STARTS,
    RESULT_EVENT,
    RESULT_ID,
    RESULT_SCORE,
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

__all__ = [
    "BAD",
    "FLOAT_CHECKS",
    "STATUS_ERROR",
    "STR_CHOICES",
    "check_float",
    "check_str",
    "collect_attribute",
    "finish_record",
    "finite",
    "python_value",
    "read_attributes",
    "records_from_otlp_json",
    "salvage_otlp_json",
]

#: OTLP ``Status.code`` of an error (``STATUS_CODE_ERROR``).
STATUS_ERROR: Final = 2


class _Bad:
    """Marker for a value of the wrong type (distinct from ``None``, a valid absence)."""


#: What a value check returns for a value of the wrong type.
BAD: Final = _Bad()


# --- value checks shared by every source -------------------------------------------


def finite(value: float) -> bool:
    """Whether ``value`` is neither NaN nor infinite."""
    return not (math.isnan(value) or math.isinf(value))


def _unit_interval(value: float) -> bool:
    return 0.0 <= value <= 1.0


def _non_negative(value: float) -> bool:
    return value >= 0.0


#: Extra checks on a value of the right type; failing one makes the value bad.
FLOAT_CHECKS: Final[dict[str, Callable[[float], bool]]] = {
    "confidence": _unit_interval,
    "edit_ratio": _unit_interval,
    "cost_usd": _non_negative,
}
#: String fields that take one of a few values only.
STR_CHOICES: Final[dict[str, frozenset[str]]] = {
    # evaluate spans (docs/conventions.md, section 8) carry a stage of their own: read
    # back from a forwarded trace file they are valid, and no stage of a run.
    "stage": frozenset((*A.ALL_STAGES, A.STAGE_EVALUATION)),
    "feedback_kind": frozenset(A.FEEDBACK_KINDS),
}


#: String fields whose every value is valid as it is (no choices, no length bound).
_PLAIN_STR_FIELDS: Final = frozenset(
    field
    for field, kind in ATTRIBUTE_FIELDS.values()
    if kind is ValueKind.STR and field not in STR_CHOICES and field not in CONTENT_FIELDS
)


def check_str(field: str, value: str) -> object:
    """``value`` for a string field (content cut to its bound), or :data:`BAD`."""
    if field in CONTENT_FIELDS:
        return value[:MAX_CONTENT_CHARS] if len(value) > MAX_CONTENT_CHARS else value
    choices = STR_CHOICES.get(field)
    if choices is not None and value not in choices:
        return BAD
    return value


def check_float(field: str, value: float) -> object:
    """``value`` for a number field, or :data:`BAD` (not finite, out of its range)."""
    if not finite(value):
        return BAD
    check = FLOAT_CHECKS.get(field)
    if check is not None and not check(value):
        return BAD
    return value


_STR_TYPES: Final = frozenset({str})
_NUMBER_TYPES: Final = frozenset({float, int})


def python_value(field: str, kind: ValueKind, value: object) -> object:
    """Typed value of a Python attribute value (SDK spans, decoded JSON), or :data:`BAD`."""
    if kind is ValueKind.STR:
        return check_str(field, value) if isinstance(value, str) else BAD
    if kind is ValueKind.BOOL:
        return value if isinstance(value, bool) else BAD
    if kind is ValueKind.FLOAT:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return BAD
        return check_float(field, float(value))
    if kind is ValueKind.INT:
        return value if isinstance(value, int) and not isinstance(value, bool) else BAD
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        return BAD
    # The usual lists (only str, only float or int) checked by C-level passes; any
    # other element type (a subclass, a bool, numpy's) takes the loops below.
    types = set(map(type, value))
    if kind is ValueKind.STR_LIST:
        if types <= _STR_TYPES:
            return tuple(value)
        return tuple(value) if all(isinstance(item, str) for item in value) else BAD
    if types <= _NUMBER_TYPES:
        numbers = tuple(map(float, value))
        return numbers if all(map(math.isfinite, numbers)) else BAD
    floats: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return BAD
        number = float(item)
        if not finite(number):
            return BAD
        floats.append(number)
    return tuple(floats)


def finish_record(record: SpanRecord, collected: Collected | None) -> None:
    """Let the other conventions fill what llmspans' own attributes left empty; costs
    nothing for a span that has none of their keys."""
    if collected is not None or (record.operation is not None and record.stage is None):
        apply(record, collected)


# --- attributes held as Python values ----------------------------------------------


def read_attributes(
    record: SpanRecord, attributes: Mapping[str, object], events: Iterable[Any] = ()
) -> None:
    """Fill ``record`` from a span's attributes held as Python values (an SDK span's);
    ``events`` (objects with ``name`` and ``attributes``) are read on an OpenLLMetry
    vector-store query only, for its result events.

    One pass over the span's own attributes: a membership test per known key would
    cost a raised ``KeyError`` per absent key on the SDK's attribute mapping. Values
    of the wrong type are counted in ``bad_attributes``.
    """
    bad = 0
    collected: Collected | None = None
    fields = ATTRIBUTE_FIELDS
    for key in attributes:
        spec = fields.get(key)
        if spec is None:
            if key in FOREIGN_FIELDS:
                collected = collect_attribute(collected, key, attributes[key])
            continue
        field, kind = spec
        value = attributes[key]
        if type(value) is str and field in _PLAIN_STR_FIELDS:
            # python_value's answer for a string field without choices or a bound
            # (pipeline, operation, ...), without its two calls
            setattr(record, field, value)
            continue
        value = python_value(field, kind, value)
        if value is BAD:
            bad += 1
        else:
            setattr(record, field, value)
    record.bad_attributes = bad
    if collected is not None:
        if record.stage is None and collected.wants_documents():
            for key in attributes:
                if key.startswith(INDEXED_STARTS):
                    collect_attribute(collected, key, attributes[key])
        if record.stage is None and collected.wants_results(record.name):
            for event in events:
                if event.name == RESULT_EVENT:
                    found = event.attributes or {}
                    if not collected.result(found.get(RESULT_ID), found.get(RESULT_SCORE)):
                        break
        apply(record, collected)
    elif record.stage is None and record.operation is not None:
        apply(record, None)  # finish_record, written out: once per span


def collect_attribute(collected: Collected | None, key: str, value: object) -> Collected | None:
    """Add one attribute of another convention (a Python value) to ``collected``."""
    spec = FOREIGN_FIELDS.get(key)
    if spec is not None:
        slot, kind = spec
        typed = python_value(slot, kind, value)
        if collected is None:
            collected = Collected()
        if typed is BAD:
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
            return _STATUS_NAMES[code] == STATUS_ERROR
        if code.isdigit():
            return int(code) == STATUS_ERROR
        raise ValueError(f"{path}.code: unknown status code {code!r}")
    if isinstance(code, int) and not isinstance(code, bool):
        return code == STATUS_ERROR
    raise ValueError(f"{path}.code: expected an integer or a status code name, got {code!r}")


_NON_FINITE: Final[dict[str, float]] = {
    "NaN": math.nan,
    "Infinity": math.inf,
    "-Infinity": -math.inf,
}


def _json_scalar(key: str, decoded: Any) -> object:
    """Decode the payload of a scalar ``AnyValue`` field, or ``BAD``."""
    if key in ("stringValue", "string_value"):
        return decoded if isinstance(decoded, str) else BAD
    if key in ("boolValue", "bool_value"):
        return decoded if isinstance(decoded, bool) else BAD
    if key in ("intValue", "int_value"):
        if isinstance(decoded, int) and not isinstance(decoded, bool):
            return decoded
        if isinstance(decoded, str):
            try:
                return int(decoded)
            except ValueError:
                return BAD
        return BAD
    if key in ("doubleValue", "double_value"):
        if isinstance(decoded, bool):
            return BAD
        if isinstance(decoded, int | float):
            return float(decoded)
        if isinstance(decoded, str):
            if decoded in _NON_FINITE:
                return _NON_FINITE[decoded]
            try:
                return float(decoded)
            except ValueError:
                return BAD
    return BAD


_ARRAY_KEYS: Final = ("arrayValue", "array_value")


def _json_any_value(value: Any, path: str) -> object:
    """Decode an OTLP JSON ``AnyValue`` into a Python value (a list for an array).

    Returns ``BAD`` for a value that is well-formed but unusable for a known
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
                    return BAD
                ((item_key, payload),) = item.items()
                scalar = BAD if item_key in _ARRAY_KEYS else _json_scalar(item_key, payload)
                if scalar is BAD:
                    return BAD
                converted.append(scalar)
            return converted
        scalar = _json_scalar(key, decoded)
        if scalar is not BAD or key in _SCALAR_KEYS:
            return scalar
    return BAD


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
                decoded = BAD if raw is None else _json_any_value(raw, f"{attribute_path}.value")
                if decoded is BAD:
                    collected = collected or Collected()
                    collected.bad += 1
                else:
                    collected = collect_attribute(collected, key, decoded)
            continue
        field, kind = spec
        raw = attribute.get("value")
        decoded = BAD if raw is None else _json_any_value(raw, f"{attribute_path}.value")
        value = BAD if decoded is BAD else python_value(field, kind, decoded)
        if value is BAD:
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
    if collected is not None and record.stage is None and collected.wants_results(record.name):
        _json_results(span.get("events"), collected, path)
    finish_record(record, collected)
    return record


def _json_results(events: Any, collected: Collected, path: str) -> None:
    """The result events of an OpenLLMetry vector-store query (OTLP JSON)."""
    for index, item in enumerate(_expect_list(events, f"{path}.events")):
        event = _expect_object(item, f"{path}.events[{index}]")
        if event.get("name") != RESULT_EVENT:
            continue
        found: dict[str, object] = {}
        attributes = _expect_list(event.get("attributes"), f"{path}.events[{index}].attributes")
        for number, item_attribute in enumerate(attributes):
            attribute_path = f"{path}.events[{index}].attributes[{number}]"
            attribute = _expect_object(item_attribute, attribute_path)
            key = attribute.get("key")
            raw = attribute.get("value")
            if key in (RESULT_ID, RESULT_SCORE) and raw is not None:
                decoded = _json_any_value(raw, f"{attribute_path}.value")
                if decoded is not BAD:
                    found[key] = decoded
        if not collected.result(found.get(RESULT_ID), found.get(RESULT_SCORE)):
            return


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


def salvage_otlp_json(request: Any) -> tuple[list[SpanRecord], list[str]]:
    """Every well-formed span of a request that is malformed somewhere, and the errors.

    For a lenient reader (``llmspans._tracefiles``), so one bad span does not cost
    the valid spans next to it. Structure that cannot be walked (a resource that is
    no object) ends the walk of that request; what was read before it is kept.
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
