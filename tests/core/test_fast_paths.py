"""The collector's fast paths agree with the reference definitions.

* :class:`SlimDecoder` on a slim-parsed request gives exactly the records
  :func:`record_from_otlp_span` gives on the fully parsed one, and re-serialising
  the slim request gives the same request back (what forwarding sends).
* :func:`accumulate` into :class:`Aggregates` gives the same numbers as applying
  the :func:`observations` list.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmspans import _attributes as A
from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder, record_from_otlp_span
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import Aggregates, Labeler, accumulate, observations
from llmspans.core.model import Thresholds
from llmspans.core.records import ATTRIBUTE_FIELDS, SpanRecord

from .test_properties import traces

_KNOWN_KEYS = sorted(ATTRIBUTE_FIELDS)
_LIST_KEYS = [
    A.RETRIEVAL_DOCUMENT_IDS,
    A.RETRIEVAL_SCORES,
    A.CONTEXT_SELECTED_IDS,
    A.GENERATION_CITATIONS,
]
_OTHER_KEYS = ["gen_ai.operation.name", "gen_ai.input.messages", "k" * 200, "llmspans.x"]

scalars = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), st.sampled_from(["", "retrieval", "pipeline"]))
    | st.builds(lambda v: AnyValue(string_value=v), st.text(max_size=120)),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=True)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=8)),
    st.just(AnyValue()),
)
strings = st.lists(st.text(max_size=140) | st.sampled_from(["", "doc-0001", "é"]), max_size=14)
doubles = st.lists(st.floats(allow_nan=True) | st.sampled_from([0.0, -0.0]), max_size=14)
values = (
    scalars
    | st.builds(
        lambda items: AnyValue(array_value=ArrayValue(values=items)),
        st.lists(scalars, max_size=12),
    )
    # Arrays of one type, as SDKs write them: the layout decoded straight from bytes.
    | st.builds(
        lambda items: AnyValue(
            array_value=ArrayValue(values=[AnyValue(string_value=item) for item in items])
        ),
        strings,
    )
    | st.builds(
        lambda items: AnyValue(
            array_value=ArrayValue(values=[AnyValue(double_value=item) for item in items])
        ),
        doubles,
    )
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    keys = st.sampled_from(_KNOWN_KEYS) | st.sampled_from(_LIST_KEYS) | st.sampled_from(_OTHER_KEYS)
    attributes = [
        KeyValue(key=draw(keys), value=draw(values)) for _ in range(draw(st.integers(0, 10)))
    ]
    span = Span(
        trace_id=draw(st.binary(min_size=16, max_size=16)),
        span_id=draw(st.binary(min_size=8, max_size=8)),
        parent_span_id=draw(st.sampled_from([b"", b"\x01" * 8, b"\x02" * 3])),
        name=draw(st.text(max_size=20)),
        kind=draw(st.sampled_from([0, 1, 3])),
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        end_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        attributes=attributes,
        status=Status(code=draw(st.sampled_from([0, 1, 2]))),
    )
    for _ in range(draw(st.integers(0, 2))):
        link = span.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)
        link.attributes.add(key="x").value.string_value = "y"
    if draw(st.booleans()):
        span.events.add(name="event", time_unix_nano=5)
    return span


def _request(batch: list[Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "svc"
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "scope"
    scope_spans.spans.extend(batch)
    return request


def _slim_records(decoder: SlimDecoder, data: bytes) -> list[SpanRecord]:
    slim: Any = SLIM_EXPORT_REQUEST.FromString(data)
    return [
        decoder.record(span)
        for resource_spans in slim.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]


# A tiny cache, shared across examples, so filling and starting over is exercised.
_DECODER = SlimDecoder(cache_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(spans(), min_size=1, max_size=6))
def test_slim_decoding_gives_the_reference_records(batch: list[Span]) -> None:
    request = _request(batch)
    data = request.SerializeToString()
    expected = [
        record_from_otlp_span(span) for span in request.resource_spans[0].scope_spans[0].spans
    ]
    assert _slim_records(_DECODER, data) == expected
    # Decoding twice (now from the cache) changes nothing.
    assert _slim_records(_DECODER, data) == expected
    # What forwarding sends is the same request, unknown fields included.
    slim: Any = SLIM_EXPORT_REQUEST.FromString(data)
    assert ExportTraceServiceRequest.FromString(slim.SerializeToString()) == request
    assert slim.resource_spans[0].resource == request.resource_spans[0].resource.SerializeToString()


def test_wrong_types_and_long_values_count_as_bad_attributes() -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8)
    span.attributes.add(key=A.STAGE).value.string_value = "not-a-stage"
    span.attributes.add(key=A.GENERATION_CONFIDENCE).value.double_value = 2.0
    long_ids = span.attributes.add(key=A.RETRIEVAL_DOCUMENT_IDS).value.array_value
    long_ids.values.add().string_value = "d" * 100
    long_ids.values.add().int_value = 3  # a mixed array is bad
    span.attributes.add(key="gen_ai.input.messages").value.string_value = "x" * 500
    span.attributes.add(key=A.PIPELINE).value.string_value = "rag"
    data = _request([span]).SerializeToString()
    (record,) = _slim_records(SlimDecoder(), data)
    assert record.bad_attributes == 3
    assert record.stage is None and record.document_ids is None and record.confidence is None
    assert record.pipeline == "rag"


@settings(max_examples=100, deadline=None)
@given(traces())
def test_accumulate_equals_the_observations_list(records: list[SpanRecord]) -> None:
    result = evaluate_trace(records, Thresholds())
    direct = Aggregates()
    accumulate(result, direct, Labeler(max_pipelines=2))
    listed = Aggregates()
    listed.apply(observations(result, Labeler(max_pipelines=2)))
    assert direct.counters == listed.counters
    assert direct.histograms == listed.histograms
    assert direct.counters  # every trace has a run: something was counted
