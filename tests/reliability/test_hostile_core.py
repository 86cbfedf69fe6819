"""Hostile input to the pure converters: the OTLP JSON reader and the protobuf span converter.

Every input is either converted or answered with ``ValueError`` carrying a message;
nothing else escapes (no ``RecursionError``, ``TypeError``, ``KeyError``...), and
no valid span next to garbage is lost.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from llmspans._tracefiles import iter_otlp_json_file, iter_otlp_json_lines
from llmspans.collector._protobuf import record_from_otlp_span
from llmspans.core.convert import records_from_otlp_json
from llmspans.core.records import ATTRIBUTE_FIELDS, SpanRecord

from .support import (
    figures,
    fuzz_settings,
    pipeline_trace,
    proto_spans,
    request_of,
    valid_request,
)

FUZZ = fuzz_settings()

KNOWN_KEYS = sorted(ATTRIBUTE_FIELDS)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "0x10", "", "0" * 40])
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ids = st.one_of(
    st.binary(min_size=0, max_size=20).map(bytes.hex),
    st.text(max_size=34),
    st.sampled_from(["0" * 32, "0" * 16, "zz" * 16, "AAAAAAAAAAAAAAAAAAAAAA==", "1" * 32]),
    json_values,
)
trace_ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
span_ids = st.binary(min_size=8, max_size=8).map(bytes.hex)
GARBAGE_ONE_IN_8 = st.sampled_from([False] * 7 + [True])
oneof_keys = st.sampled_from(
    [
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
        "string_value",
        "unknownValue",
    ]
)


@st.composite
def any_values(draw: st.DrawFn, depth: int = 0) -> Any:
    key = draw(oneof_keys)
    if key == "arrayValue" and depth < 3:
        items = draw(st.lists(any_values(depth + 1), max_size=5))
        return {key: draw(st.sampled_from([{"values": items}, items, None, {"values": "x"}]))}
    if key == "kvlistValue" and depth < 3:
        return {key: {"values": [{"key": "k", "value": draw(any_values(depth + 1))}]}}
    return {key: draw(json_values)}


@st.composite
def hostile_span(draw: st.DrawFn) -> Any:
    """A span whose every field is well-formed most of the time and garbage sometimes."""

    def sometimes_garbage(good: st.SearchStrategy[Any]) -> Any:
        return draw(ids) if draw(GARBAGE_ONE_IN_8) else draw(good)

    span: dict[str, Any] = {
        "traceId": sometimes_garbage(trace_ids),
        "spanId": sometimes_garbage(span_ids),
        "name": sometimes_garbage(st.text(max_size=10)),
    }
    if draw(st.booleans()):
        span["parentSpanId"] = sometimes_garbage(span_ids)
    if draw(st.booleans()):
        span["startTimeUnixNano"] = sometimes_garbage(
            st.integers(0, 2**64).map(str) | st.integers(0, 2**63)
        )
    if draw(st.booleans()):
        span["status"] = sometimes_garbage(
            st.fixed_dictionaries(
                {"code": st.sampled_from([0, 1, 2, "STATUS_CODE_ERROR", "2", "BOGUS", 2.5])}
            )
        )
    attribute = st.fixed_dictionaries(
        {"key": st.sampled_from(KNOWN_KEYS) | st.text(max_size=5), "value": any_values()}
    )
    span["attributes"] = [sometimes_garbage(attribute) for _ in range(draw(st.integers(0, 6)))]
    if draw(st.booleans()):
        span["links"] = [
            sometimes_garbage(st.fixed_dictionaries({"traceId": trace_ids, "spanId": span_ids}))
        ]
    if draw(st.booleans()):
        span["unknownField"] = draw(json_values)
    return span


@st.composite
def hostile_request(draw: st.DrawFn) -> Any:
    if draw(GARBAGE_ONE_IN_8):
        return draw(json_values)
    spans = draw(st.lists(hostile_span(), max_size=4))
    scope: Any = {"spans": spans}
    if draw(GARBAGE_ONE_IN_8):
        scope = draw(json_values)
    return {"resourceSpans": [{"scopeSpans": [scope], "resource": draw(json_values)}]}


def _valid_json_line() -> tuple[str, int]:
    request, count = valid_request(2)
    return json_format.MessageToJson(request, indent=None), count


def test_json_reader_answers_every_input_with_records_or_value_error() -> None:
    tally = Counter[str]()

    @FUZZ
    @given(request=hostile_request())
    def check(request: Any) -> None:
        tally["inputs"] += 1
        try:
            records = records_from_otlp_json(request)
        except ValueError as error:
            assert str(error), "a ValueError must carry a message"
            tally["rejected"] += 1
            return
        tally["accepted"] += 1
        tally["spans"] += len(records)
        assert all(isinstance(record, SpanRecord) for record in records)
        for record in records:
            tally["bad_attributes"] += record.bad_attributes
            assert len(record.trace_id) == 16 and len(record.span_id) == 8
            if record.confidence is not None:
                assert 0.0 <= record.confidence <= 1.0
            for number in record.scores or ():
                assert math.isfinite(number)

    check()
    figures("json reader fuzz", **tally)


def test_json_lines_reader_skips_bad_lines_and_keeps_every_valid_one() -> None:
    tally = Counter[str]()

    @FUZZ
    @given(lines=st.lists(st.text(max_size=60) | hostile_request().map(json.dumps), max_size=5))
    def check(lines: list[str]) -> None:
        valid, count = _valid_json_line()
        mixed = [*lines, valid, *lines]
        tally["inputs"] += 1
        tally["lines"] += len(mixed)
        errors: list[tuple[int, str]] = []
        records = list(iter_otlp_json_lines(mixed, on_error=lambda n, m: errors.append((n, m))))
        tally["bad_lines"] += len(errors)
        tally["valid_spans_sent"] += count
        assert all(message for _, message in errors)
        assert len(records) >= count
        try:
            strict = list(iter_otlp_json_lines(mixed))
        except ValueError as error:
            assert str(error).startswith("line ")
        else:
            assert len(strict) == len(records)

    check()
    figures("json lines fuzz", **tally, lost=0)


@pytest.mark.parametrize("depth", [10, 200, 2_000, 50_000])
def test_deep_nesting_is_a_clear_error_not_a_crash(depth: int) -> None:
    nested: Any = {"stringValue": "x"}
    for _ in range(min(depth, 2_000)):
        nested = {"arrayValue": {"values": [nested]}}
    span = {
        "traceId": "1" * 32,
        "spanId": "2" * 16,
        "attributes": [{"key": "llmspans.retrieval.document_ids", "value": nested}],
    }
    request = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    try:
        records = records_from_otlp_json(request)
    except ValueError as error:
        assert str(error)
    else:
        assert records[0].document_ids is None
        assert records[0].bad_attributes == 1
    line = "[" * depth + "]" * depth
    errors: list[tuple[int, str]] = []
    assert list(iter_otlp_json_lines([line], on_error=lambda n, m: errors.append((n, m)))) == []
    assert len(errors) == 1 and errors[0][1]
    figures("json deep nesting", depth=depth, line_errors=len(errors))


def test_enormous_arrays_and_non_finite_scores_are_typed_or_rejected() -> None:
    huge = {"arrayValue": {"values": [{"stringValue": f"d{i}"} for i in range(200_000)]}}
    bad_scores = {
        "arrayValue": {
            "values": [{"doubleValue": "NaN"}, {"doubleValue": "Infinity"}, {"doubleValue": 1}]
        }
    }
    span = {
        "traceId": "1" * 32,
        "spanId": "2" * 16,
        "attributes": [
            {"key": "llmspans.retrieval.document_ids", "value": huge},
            {"key": "llmspans.retrieval.scores", "value": bad_scores},
            {"key": "llmspans.generation.confidence", "value": {"doubleValue": "-Infinity"}},
            {"key": "llmspans.generation.refused", "value": {"stringValue": "true"}},
            {"key": "llmspans.task.completed", "value": {"intValue": "1"}},
        ],
    }
    [record] = records_from_otlp_json({"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]})
    assert record.document_ids is not None and len(record.document_ids) == 200_000
    assert record.scores is None and record.confidence is None and record.refused is None
    assert record.task_completed is None
    assert record.bad_attributes == 4
    figures("json enormous array", ids=len(record.document_ids), bad=record.bad_attributes)


def test_protobuf_converter_never_raises_on_any_parseable_span() -> None:
    """Random bytes and mutations of a valid request: whatever parses, converts."""
    tally = Counter[str]()
    valid = request_of(pipeline_trace()).SerializeToString()

    @FUZZ
    @given(data=st.binary(max_size=2_000), seed=st.integers(0, 2**32 - 1))
    def check(data: bytes, seed: int) -> None:
        rng = random.Random(seed)
        mutated = bytearray(valid)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(mutated))
            mutated[position] = rng.randrange(256)
        for payload in (data, bytes(mutated), valid[: rng.randrange(len(valid))]):
            tally["inputs"] += 1
            request = ExportTraceServiceRequest()
            try:
                request.ParseFromString(payload)
            except DecodeError:
                tally["unparseable"] += 1
                continue
            for span in proto_spans(request):
                tally["spans_converted"] += 1
                record = record_from_otlp_span(span)
                assert record.trace_id == span.trace_id
                if record.confidence is not None:
                    assert 0.0 <= record.confidence <= 1.0

    check()
    figures("protobuf converter fuzz", **tally)


def test_type_confused_protobuf_attributes_are_counted_not_raised() -> None:
    from .support import kv

    span = Span(
        trace_id=b"\x01" * 16,
        span_id=b"\x02" * 8,
        attributes=[
            kv("llmspans.stage", 7),
            kv("llmspans.retrieval.scores", [float("nan"), 1.0]),
            kv("llmspans.retrieval.document_ids", ["a", 1, True]),
            kv("llmspans.generation.confidence", float("inf")),
            kv("llmspans.cost.usd", -3.0),
            kv("llmspans.action.verified", "yes"),
            kv("llmspans.context.selected_ids", b"raw"),
        ],
    )
    record = record_from_otlp_span(span)
    assert record.bad_attributes == 7
    assert (record.stage, record.scores, record.document_ids, record.confidence) == (
        None,
        None,
        None,
        None,
    )
    assert record.cost_usd is None and record.verified is None and record.selected_ids is None


def test_file_reader_reports_bad_lines_by_number(tmp_path: Path) -> None:
    valid, count = _valid_json_line()
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join(["{", valid, '{"resourceSpans": 5}', "", valid, "[" * 100_000]))
    errors: list[tuple[int, str]] = []
    records = list(iter_otlp_json_file(path, on_error=lambda n, m: errors.append((n, m))))
    assert len(records) == 2 * count
    assert [number for number, _ in errors] == [1, 3, 6]
    with pytest.raises(ValueError, match="line 1"):
        list(iter_otlp_json_file(path))
    figures("json file reader", lines=6, spans=len(records), bad_lines=len(errors))


ATHERIS_TARGET = textwrap.dedent(
    """
    import json, sys
    import atheris
    import google.protobuf.json_format
    import llmspans.core.records
    with atheris.instrument_imports():
        from google.protobuf.message import DecodeError
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
        from llmspans.collector._protobuf import record_from_otlp_span
        from llmspans.core.convert import records_from_otlp_json

    def one_input(data: bytes) -> None:
        request = ExportTraceServiceRequest()
        try:
            request.ParseFromString(data)
        except DecodeError:
            pass
        else:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        record_from_otlp_span(span)
        try:
            decoded = json.loads(data.decode("utf-8", "replace"))
        except (ValueError, RecursionError):
            return
        try:
            records_from_otlp_json(decoded)
        except ValueError:
            pass

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
    """
)


def test_atheris_coverage_guided_fuzz_of_the_converters(tmp_path: Path) -> None:
    """libFuzzer-driven run over both converters; any uncaught exception fails it."""
    pytest.importorskip("atheris", reason="atheris does not install on this platform")
    script = tmp_path / "fuzz_convert.py"
    script.write_text(ATHERIS_TARGET)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    request, _ = valid_request(1)
    (corpus / "proto").write_bytes(request.SerializeToString())
    (corpus / "json").write_text(json_format.MessageToJson(request, indent=None))
    runs = int(os.environ.get("LLMSPANS_ATHERIS_RUNS", "30000"))
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            f"-runs={runs}",
            "-max_len=4096",
            "-rss_limit_mb=1024",
            str(corpus),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, tail
    done = [line for line in tail.splitlines() if line.startswith("Done")]
    figures("atheris converters", runs=runs, result=done[-1] if done else "?")
