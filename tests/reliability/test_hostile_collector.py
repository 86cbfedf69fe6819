"""Hostile input to the running collector's OTLP/HTTP and OTLP/gRPC receivers.

One collector process takes fuzzed requests (hypothesis) of every kind: random and
mutated protobuf, type-confused attributes, NaN and infinite scores, enormous
arrays, deep nesting of kvlist and array values, invalid ids, unknown fields,
hostile OTLP JSON, bad gzip, wrong content types. Every request gets an answer
(an accepted export or a clear 4xx / gRPC error carrying a message) within a
bounded time, the process never dies, and valid traffic sent alongside by
another thread reaches the downstream backend completely.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2  # type: ignore[import-untyped]
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from .support import (
    GRPC_EXPORT_METHOD,
    WAIT_S,
    CollectorProcess,
    CountingSink,
    figures,
    fuzz_settings,
    http_exporter,
    kv,
    metric_total,
    pipeline_trace,
    proto_spans,
    request_of,
    requires_collector,
    valid_request,
    wait_until,
)
from .test_hostile_core import hostile_request

FUZZ = fuzz_settings(HealthCheck.function_scoped_fixture)
#: A request must be answered, not hang; the bound leaves room for a loaded machine.
ANSWER_TIMEOUT_S = 60.0
HTTP_STATUSES = {200, 400, 413, 415, 429, 503}


@pytest.fixture(scope="module")
def backend() -> Iterator[CountingSink]:
    sink = CountingSink().start()
    yield sink
    sink.stop(keep_port=False)


@pytest.fixture(scope="module")
def collector(
    backend: CountingSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CollectorProcess]:
    requires_collector()
    process = CollectorProcess(
        tmp_path_factory.mktemp("hostile"),
        exporters=[http_exporter(backend)],
        limits={"max_request_bytes": 4 * 1024 * 1024},
        assembly={"max_inflight_spans": 200_000},
    )
    process.start()
    yield process
    process.stop()


class ValidTraffic:
    """A thread that keeps posting valid requests and remembers every span it got 200 for."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.keys: set[tuple[bytes, bytes]] = set()
        self.stop = threading.Event()
        self.refused = 0
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            request, _ = valid_request(3)
            reply = self.collector.post(request.SerializeToString(), timeout=ANSWER_TIMEOUT_S)
            if reply.status == 200:
                self.keys.update((s.trace_id, s.span_id) for s in proto_spans(request))
            else:
                self.refused += 1
            self.stop.wait(0.02)

    def __enter__(self) -> ValidTraffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(ANSWER_TIMEOUT_S)  # a post in progress finishes first
        assert not self.thread.is_alive(), "the valid traffic did not stop"


# --- payload strategies ---------------------------------------------------------------

#: One valid request, fixed so that the strategies draw the same way on every replay.
TEMPLATE = request_of(pipeline_trace(now_ns=1_700_000_000_000_000_000)).SerializeToString()
#: 8 KiB on the wire, 8 MiB decompressed: twice the limit the collector runs with here.
GZIP_BOMB = gzip.compress(b"\0" * (8 * 1024 * 1024))
OVERSIZED = os.urandom(5 * 1024 * 1024)


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        if number:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field, encoded by hand."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def deep_attribute_request(depth: int, kind: str) -> bytes:
    """A request whose one span has an attribute nested ``depth`` levels deep.

    Encoded by hand: the protobuf runtime itself refuses to build messages deeper
    than its limit, but a hostile sender does not use the runtime.
    """
    value = AnyValue(string_value="leaf").SerializeToString()
    for _ in range(depth):
        if kind == "array":  # AnyValue.array_value(5) -> ArrayValue.values(1)
            value = _field(5, _field(1, value))
        else:  # AnyValue.kvlist_value(6) -> KeyValueList.values(1) -> KeyValue{key, value}
            value = _field(6, _field(1, _field(1, b"k") + _field(2, value)))
    [span] = pipeline_trace(now_ns=1_700_000_000_000_000_000)[1:2]
    attribute = _field(1, b"llmspans.retrieval.document_ids") + _field(2, value)
    span_bytes = span.SerializeToString() + _field(9, attribute)
    return _field(1, _field(2, _field(2, span_bytes)))


@st.composite
def type_confused_span(draw: st.DrawFn) -> Span:
    [span] = pipeline_trace()[1:2]
    keys = st.sampled_from(
        [
            "llmspans.stage",
            "llmspans.pipeline",
            "llmspans.retrieval.document_ids",
            "llmspans.retrieval.scores",
            "llmspans.generation.confidence",
            "llmspans.generation.citations",
            "llmspans.action.verified",
            "llmspans.cost.usd",
            "gen_ai.usage.input_tokens",
            "custom.attr",
        ]
    )
    values = st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=20),
        st.binary(max_size=10),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
        st.lists(
            st.one_of(st.text(max_size=3), st.integers(-(2**63), 2**63 - 1), st.booleans()),
            max_size=5,
        ),
        st.sampled_from([1, 1_000, 100_000]).map(lambda n: [f"doc-{i}" for i in range(n)]),
    )
    del span.attributes[:]
    for _ in range(draw(st.integers(0, 6))):
        span.attributes.append(kv(draw(keys), draw(values)))
    if draw(st.booleans()):
        span.trace_id = draw(st.binary(max_size=20))
    if draw(st.booleans()):
        span.span_id = draw(st.binary(max_size=12))
    if draw(st.booleans()):
        span.parent_span_id = draw(st.binary(max_size=12))
    return span


def _with_unknown_fields(payload: bytes, tag: int, blob: bytes) -> bytes:
    """Append a length-delimited field of an unknown number (forward compatibility)."""
    key = (tag << 3) | 2
    return payload + _varint(key) + _varint(len(blob)) + blob


@st.composite
def hostile_http(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str], str]:
    """(kind, body, headers, content type) of one hostile OTLP/HTTP request."""
    valid = TEMPLATE
    kind = draw(
        st.sampled_from(
            [
                "random_bytes",
                "mutated",
                "truncated",
                "type_confused",
                "unknown_fields",
                "deep_nesting",
                "json_hostile",
                "json_text",
                "json_deep",
                "gzip_valid",
                "gzip_bad",
                "gzip_bomb",
                "content_type",
                "oversized",
            ]
        )
    )
    protobuf = "application/x-protobuf"
    if kind == "random_bytes":
        return kind, draw(st.binary(max_size=3_000)), {}, protobuf
    if kind == "mutated":
        data = bytearray(valid)
        for position in draw(st.lists(st.integers(0, len(valid) - 1), min_size=1, max_size=8)):
            data[position] = draw(st.integers(0, 255))
        return kind, bytes(data), {}, protobuf
    if kind == "truncated":
        return kind, valid[: draw(st.integers(0, len(valid) - 1))], {}, protobuf
    if kind == "type_confused":
        spans = draw(st.lists(type_confused_span(), min_size=1, max_size=3))
        return kind, request_of(spans).SerializeToString(), {}, protobuf
    if kind == "deep_nesting":
        depth = draw(st.sampled_from([5, 50, 99, 101, 150, 400, 5_000]))
        shape = draw(st.sampled_from(["array", "kvlist"]))
        return kind, deep_attribute_request(depth, shape), {}, protobuf
    if kind == "unknown_fields":
        tag = draw(st.integers(16, 50_000))
        return kind, _with_unknown_fields(valid, tag, draw(st.binary(max_size=50))), {}, protobuf
    if kind == "json_hostile":
        return kind, json.dumps(draw(hostile_request())).encode(), {}, "application/json"
    if kind == "json_text":
        return kind, draw(st.binary(max_size=200)), {}, "application/json"
    if kind == "json_deep":
        depth = draw(st.sampled_from([100, 1_000, 10_000, 100_000]))
        shape = draw(st.sampled_from(["list", "array_value"]))
        if shape == "list":
            body = "[" * depth + "]" * depth
        else:
            body = (
                '{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"'
                + "1" * 32
                + '","spanId":"'
                + "2" * 16
                + '","attributes":[{"key":"k","value":'
                + '{"arrayValue":{"values":[' * depth
                + '{"stringValue":"x"}'
                + "]}}" * depth
                + "}]}]}]}]}"
            )
        return kind, body.encode(), {}, "application/json"
    if kind == "gzip_valid":
        return kind, gzip.compress(valid), {"Content-Encoding": "gzip"}, protobuf
    if kind == "gzip_bad":
        packed = gzip.compress(valid)
        cut = draw(st.integers(0, len(packed) - 1))
        body = draw(st.sampled_from([packed[:cut], b"\x1f\x8b" + packed[cut:], valid]))
        return (
            kind,
            body,
            {"Content-Encoding": draw(st.sampled_from(["gzip", "br", "zstd"]))},
            (protobuf),
        )
    if kind == "gzip_bomb":
        return (
            kind,
            gzip.compress(b"\0" * (8 * 1024 * 1024)),
            {"Content-Encoding": "gzip"},
            (protobuf),
        )
    if kind == "content_type":
        content_type = draw(
            st.sampled_from(["text/plain", "application/grpc", "", "application/xml", "a/b; x"])
        )
        return kind, valid, {}, content_type
    return kind, OVERSIZED, {}, protobuf


def test_http_receiver_answers_every_hostile_request_and_loses_no_valid_span(
    collector: CollectorProcess, backend: CountingSink
) -> None:
    tally: Counter[str] = Counter()
    statuses: Counter[int] = Counter()

    @FUZZ
    @given(case=hostile_http())
    def check(case: tuple[str, bytes, dict[str, str], str]) -> None:
        kind, body, headers, content_type = case
        started = time.monotonic()
        reply = collector.post(
            body, content_type=content_type, headers=headers, timeout=ANSWER_TIMEOUT_S
        )
        elapsed = time.monotonic() - started
        tally["inputs"] += 1
        tally[kind] += 1
        statuses[reply.status] += 1
        assert reply.status in HTTP_STATUSES, (kind, reply.status, reply.body[:300])
        assert elapsed < ANSWER_TIMEOUT_S
        if reply.status != 200:
            assert reply.body, f"{kind}: a refusal must say why"
            if reply.headers.get("content-type", "").startswith("application/json"):
                message = json.loads(reply.body)["message"]
            else:
                message = status_pb2.Status.FromString(reply.body).message
            assert message, f"{kind}: empty error message"
        assert collector.alive(), collector.log()

    # The collector serves the whole module: count only what this test makes it refuse.
    rejected_before = metric_total(
        collector.samples(), "llmspans_collector_requests_rejected_total"
    )
    with ValidTraffic(collector) as valid:
        check()
    delivered = wait_until(lambda: valid.keys <= backend.state.span_keys, WAIT_S)
    missing = len(valid.keys - backend.state.span_keys)
    samples = collector.samples()
    figures(
        "http receiver fuzz",
        inputs=tally["inputs"],
        statuses=dict(sorted(statuses.items())),
        kinds={k: v for k, v in tally.items() if k != "inputs"},
        valid_spans_sent=len(valid.keys),
        valid_refused_requests=valid.refused,
        forwarded_total=backend.unique,
        lost=missing,
        rejected_requests=metric_total(samples, "llmspans_collector_requests_rejected_total"),
    )
    assert delivered and missing == 0
    assert valid.keys, "valid traffic went through during the fuzzing"
    refused = sum(count for status, count in statuses.items() if status != 200)
    rejected = metric_total(samples, "llmspans_collector_requests_rejected_total")
    assert rejected - rejected_before == refused + valid.refused, "every refused request is counted"
    assert metric_total(samples, "llmspans_collector_spans_received_total") >= len(valid.keys)
    assert collector.alive()


def test_grpc_receiver_answers_every_hostile_request(
    collector: CollectorProcess, backend: CountingSink
) -> None:
    import grpc

    tally: Counter[str] = Counter()
    valid_keys: set[tuple[bytes, bytes]] = set()
    channel = grpc.insecure_channel(
        f"127.0.0.1:{collector.grpc_port}",
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    )
    export = channel.unary_unary(GRPC_EXPORT_METHOD)
    allowed = {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
    }

    @FUZZ
    @given(case=hostile_http())
    def check(case: tuple[str, bytes, dict[str, str], str]) -> None:
        kind, body, _, content_type = case
        if content_type == "application/json" or kind.startswith("gzip"):
            kind, body = "random_bytes", body[:2_000]
        tally["inputs"] += 1
        try:
            export(body, timeout=ANSWER_TIMEOUT_S)
            tally["OK"] += 1
        except grpc.RpcError as error:
            code = error.code()  # type: ignore[attr-defined]
            tally[code.name] += 1
            assert code in allowed, (kind, code, error.details())  # type: ignore[attr-defined]
            assert error.details(), f"{kind}: a refusal must say why"  # type: ignore[attr-defined]
        request, _ = valid_request(1)
        export(request.SerializeToString(), timeout=ANSWER_TIMEOUT_S)
        valid_keys.update((s.trace_id, s.span_id) for s in proto_spans(request))

    try:
        check()
    finally:
        channel.close()
    delivered = wait_until(lambda: valid_keys <= backend.state.span_keys, WAIT_S)
    missing = len(valid_keys - backend.state.span_keys)
    figures(
        "grpc receiver fuzz",
        inputs=tally.pop("inputs"),
        codes=dict(tally),
        valid_spans_sent=len(valid_keys),
        lost=missing,
    )
    assert delivered and missing == 0
    assert collector.alive(), collector.log()


def test_collector_still_ready_and_consistent_after_the_fuzzing(
    collector: CollectorProcess,
) -> None:
    from .support import get

    assert collector.alive()
    assert get(collector.metrics_port, "/healthz").status == 200
    assert wait_until(lambda: get(collector.metrics_port, "/readyz").status == 200, WAIT_S)
    samples = collector.samples()
    internal = metric_total(samples, "llmspans_collector_internal_errors_total")
    figures(
        "collector after fuzzing",
        spans_received=metric_total(samples, "llmspans_collector_spans_received_total"),
        spans_rejected=metric_total(samples, "llmspans_collector_spans_rejected_total"),
        bad_attributes=metric_total(samples, "llmspans_collector_bad_attributes_total"),
        internal_errors=internal,
        rss_mb=round(collector.rss_bytes() / 2**20, 1),
    )
    assert internal == 0, collector.log()


def test_atheris_fuzz_of_the_collector_request_decoding(tmp_path: Path) -> None:
    """Coverage-guided fuzzing of the receivers' decoding (protobuf and OTLP JSON)."""
    pytest.importorskip("atheris", reason="atheris does not install on this platform")
    requires_collector()
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "fuzz_wire.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys
            import atheris
            # Dependencies first, uninstrumented: coverage feedback is wanted for our
            # decoding code only, and instrumenting pydantic or protobuf is slow.
            import llmspans.collector
            import google.protobuf.json_format
            import llmspans.core.records
            import opentelemetry.proto.collector.trace.v1.trace_service_pb2
            with atheris.instrument_imports():
                from llmspans.collector._wire import RequestError, json_to_protobuf, parse_request
                from llmspans.collector._protobuf import record_from_otlp_span

            def one_input(data: bytes) -> None:
                try:
                    request = parse_request(data)
                except RequestError:
                    pass
                else:
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            for span in scope.spans:
                                record_from_otlp_span(span)
                try:
                    document = json.loads(data)
                except (UnicodeDecodeError, ValueError, RecursionError):
                    return
                try:
                    json_to_protobuf(document)
                except RequestError:
                    pass

            atheris.Setup(sys.argv, one_input)
            atheris.Fuzz()
            """
        )
    )
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    request, _ = valid_request(1)
    (corpus / "proto").write_bytes(request.SerializeToString())
    (corpus / "json").write_text(json_format.MessageToJson(request, indent=None))
    runs = int(os.environ.get("LLMSPANS_ATHERIS_RUNS", "30000"))
    result = subprocess.run(
        [sys.executable, str(script), f"-runs={runs}", "-max_len=4096", str(corpus)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    tail = (result.stdout + result.stderr)[-3000:]
    assert result.returncode == 0, tail
    done = [line for line in tail.splitlines() if line.startswith("Done")]
    figures("atheris collector decoding", runs=runs, result=done[-1] if done else "?")
