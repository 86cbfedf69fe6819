"""One hostile sender must not freeze, bloat or silence the collector.

Each test plays one attack on a real collector (a subprocess, loopback only), scaled
down to seconds with bounds set low in its configuration, and checks that the bound
holds while valid traffic sent alongside is fully processed. Each prints its figures
(bytes held, seconds blocked, spans sent / forwarded / lost).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from llmspans.collector._wire import protobuf_to_json

from .support import (
    GRPC_EXPORT_METHOD,
    WAIT_S,
    CollectorProcess,
    CountingSink,
    Reply,
    any_value,
    figures,
    get,
    http_exporter,
    kv,
    label_values,
    metric_total,
    new_span_id,
    parse_metrics,
    pipeline_trace,
    request_of,
    rss_sampler,
    valid_request,
    wait_until,
)

MiB = 1024 * 1024
REFUSED = "llmspans_collector_connections_refused_total"


def post_until_taken(collector: CollectorProcess, body: bytes, deadline_s: float = 30.0) -> int:
    """POST ``body`` until it is taken (retrying refusals and closed connections, as
    an SDK exporter does); returns the number of attempts."""
    deadline = time.monotonic() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        try:
            reply = collector.post(body, timeout=10)
            if reply.status == 200:
                return attempts
            assert reply.status in (429, 503), (reply.status, reply.body[:200])
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not taken after {attempts} attempts"
        time.sleep(0.2)


def send_valid_alongside(
    collector: CollectorProcess, stop: threading.Event, sent: list[int]
) -> threading.Thread:
    """A thread that keeps sending small valid requests until ``stop`` is set."""

    def loop() -> None:
        while not stop.is_set():
            request, spans = valid_request(2)
            post_until_taken(collector, request.SerializeToString())
            sent.append(spans)
            time.sleep(0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def is_closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def string_list(key: str, values: list[str]) -> KeyValue:
    """A ``KeyValue`` holding an array of strings, encoded by hand: building 100,000
    ``AnyValue`` objects through the protobuf API takes the test a second."""
    elements = b"".join(_field(0x0A, _field(0x0A, value.encode())) for value in values)
    any_value = _field(0x2A, elements)  # AnyValue.array_value
    return KeyValue.FromString(_field(0x0A, key.encode()) + _field(0x12, any_value))


def set_attribute(span: Span, attribute: KeyValue) -> None:
    for index, existing in enumerate(span.attributes):
        if existing.key == attribute.key:
            span.attributes[index].CopyFrom(attribute)
            return
    span.attributes.append(attribute)


def timed(call: Callable[[], Reply]) -> tuple[Reply, float]:
    start = time.monotonic()
    reply = call()
    return reply, time.monotonic() - start


def grpc_export(port: int, body: bytes, timeout: float = 10.0) -> grpc.StatusCode:
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 256 * MiB)]
    ) as channel:
        try:
            channel.unary_unary(GRPC_EXPORT_METHOD)(body, timeout=timeout)
        except grpc.RpcError as error:
            code: grpc.StatusCode = error.code()
            return code
    return grpc.StatusCode.OK


# --- connections -------------------------------------------------------------------


def _slowloris(port: int, count: int) -> tuple[list[socket.socket], int]:
    """``count`` connections that send half a request header and then nothing."""
    socks: list[socket.socket] = []
    failed = 0
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: applic")
            socks.append(sock)
        except OSError:
            failed += 1
    return socks, failed


def test_slowloris_is_capped_and_timed_out_and_nothing_else_starves(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        extra={"connections": {"max_connections": 40, "header_timeout_s": 1.5}},
        open_files=256,
    )
    attack = 300
    started = time.monotonic()
    socks, failed = _slowloris(collector.http_port, attack)
    try:
        healthz, healthz_s = timed(lambda: get(collector.metrics_port, "/healthz"))
        metrics, metrics_s = timed(lambda: get(collector.metrics_port, "/metrics"))
        request, grpc_spans = valid_request(3)
        grpc_code = grpc_export(collector.grpc_port, request.SerializeToString())
        assert healthz.status == 200 and metrics.status == 200
        assert grpc_code == grpc.StatusCode.OK
        # every half-open connection is closed: the surplus at once, the rest at the
        # header timeout
        assert wait_until(lambda: all(is_closed(s) for s in socks), 15.0)
        closed_s = time.monotonic() - started
    finally:
        for sock in socks:
            sock.close()
    sent = grpc_spans
    for _ in range(5):
        request, spans = valid_request(2)
        post_until_taken(collector, request.SerializeToString())
        sent += spans
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    samples = collector.samples()
    at_limit = metric_total(samples, REFUSED, listener="http", reason="limit")
    timed_out = metric_total(samples, REFUSED, listener="http", reason="header_timeout")
    log_bytes = collector.log_path.stat().st_size
    figures(
        "slowloris",
        connections=attack,
        connect_failed=failed,
        closed_at_limit=int(at_limit),
        closed_at_header_timeout=int(timed_out),
        all_closed_after_s=round(closed_s, 1),
        healthz_s=round(healthz_s, 3),
        metrics_s=round(metrics_s, 3),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
        log_bytes=log_bytes,
    )
    assert at_limit >= attack - 40 - failed - 5
    assert timed_out >= 1
    assert healthz_s < 2.0 and metrics_s < 2.0
    assert log_bytes < 20_000


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_accept_errors_are_logged_once_per_kind_not_flooded(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink, loop: str
) -> None:
    # The open-file limit below the connection cap: accept() itself fails (EMFILE).
    # asyncio reports each failure to the loop's exception handler (a log line per
    # attempt by default); uvloop's libuv accepts and closes the surplus itself.
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        extra={"connections": {"max_connections": 1000, "header_timeout_s": 1.5}},
        open_files=96,
        cli_args=["--no-uvloop"] if loop == "asyncio" else [],
    )
    socks, _ = _slowloris(collector.http_port, 200)
    try:
        time.sleep(1.0)
        assert wait_until(lambda: all(is_closed(s) for s in socks), 15.0)
    finally:
        for sock in socks:
            sock.close()
    # the collector recovers once the descriptors are free again
    request, sent = valid_request(2)
    post_until_taken(collector, request.SerializeToString())
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    samples = collector.samples()
    accept_errors = metric_total(samples, REFUSED, listener="accept")
    log = collector.log_path.read_text(errors="replace")
    accept_lines = [line for line in log.splitlines() if "accept" in line.lower()]
    figures(
        f"accept_errors_{loop}",
        connections=200,
        open_files=96,
        accept_errors_counted=int(accept_errors),
        accept_log_lines=len(accept_lines),
        log_bytes=len(log),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    if loop == "asyncio":
        assert accept_errors >= 1
    assert len(accept_lines) <= 3
    assert len(log) < 20_000
    assert "Traceback" not in log


# --- bytes --------------------------------------------------------------------------


def test_stalled_uploads_hold_no_more_than_the_receive_budget(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        limits={
            "max_memory_bytes": 32 * MiB,
            "max_receive_bytes": 8 * MiB,
            "max_request_bytes": 4 * MiB,
        },
        extra={"connections": {"body_timeout_s": 2.0}},
    )
    rss_before = collector.rss_bytes()
    stop_rss, rss = rss_sampler(collector)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    declared = 4_000_000

    def stalled_upload() -> None:
        try:
            sock = socket.create_connection(("127.0.0.1", collector.http_port), timeout=10)
        except OSError:
            return
        with sock:
            head = (
                "POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/x-protobuf\r\n"
                f"Content-Length: {declared}\r\n\r\n"
            )
            try:
                sock.sendall(head.encode() + b"\0" * 1_000_000)
                answer = sock.recv(200)
            except OSError:
                answer = b""
            status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1") else 0
            with lock:
                statuses[status] += 1

    stop_valid = threading.Event()
    sent: list[int] = []
    valid = send_valid_alongside(collector, stop_valid, sent)
    uploads = [threading.Thread(target=stalled_upload) for _ in range(20)]
    for thread in uploads:
        thread.start()
    time.sleep(0.5)
    readyz_during = get(collector.metrics_port, "/readyz").status
    held_during = metric_total(collector.samples(), "llmspans_collector_receive_bytes")
    for thread in uploads:
        thread.join(30)
    stop_valid.set()
    valid.join(30)
    stop_rss.set()
    total = sum(sent)
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    samples = collector.samples()
    figures(
        "stalled_uploads",
        uploads=20,
        declared_bytes_each=declared,
        statuses=dict(statuses),
        receive_bytes_held=int(held_during),
        readyz_during=readyz_during,
        rss_before_mb=round(rss_before / MiB, 1),
        rss_peak_mb=round(max(rss) / MiB, 1),
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    # 20 MB sent in all against an 8 MiB budget: the uploads that would cross it
    # are refused with a retry delay, the ones held are cut off at the body timeout
    assert statuses[503] >= 5
    assert statuses[408] >= 1
    assert held_during <= 8 * MiB
    assert readyz_during == 503
    assert max(rss) - rss_before < 40 * MiB
    assert metric_total(samples, "llmspans_collector_requests_rejected_total") >= 5


def test_large_grpc_calls_are_refused_without_memory(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)], limits={"max_request_bytes": 1 * MiB}
    )
    rss_before = collector.rss_bytes()
    stop_rss, rss = rss_sampler(collector)
    codes: Counter[str] = Counter()
    body = b"\x0a" + b"\xff" * 3_000_000

    def call() -> None:
        codes[grpc_export(collector.grpc_port, body).name] += 1

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    request, sent = valid_request(3)
    valid_code = grpc_export(collector.grpc_port, request.SerializeToString())
    for thread in threads:
        thread.join(30)
    stop_rss.set()
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    figures(
        "large_grpc_calls",
        calls=8,
        bytes_each=len(body),
        codes=dict(codes),
        rss_before_mb=round(rss_before / MiB, 1),
        rss_peak_mb=round(max(rss) / MiB, 1),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    assert codes == Counter({"RESOURCE_EXHAUSTED": 8})
    assert valid_code == grpc.StatusCode.OK
    assert max(rss) - rss_before < 30 * MiB


def test_large_json_is_refused_before_it_is_parsed(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        limits={"max_memory_bytes": 64 * MiB, "max_receive_bytes": 16 * MiB},
    )
    rss_before = collector.rss_bytes()
    # Within max_request_bytes, but parsing it would take about 8x its size.
    big = b'{"resourceSpans": [' + b" " * (6 * MiB) + b"]}"
    reply, refused_s = timed(
        lambda: collector.post(big, content_type="application/json", timeout=30)
    )
    _, healthz_s = timed(lambda: get(collector.metrics_port, "/healthz"))
    # a large valid JSON request that fits is parsed (on a worker thread) and taken
    request, sent = valid_request(300)
    document = json.dumps(protobuf_to_json(request.SerializeToString())).encode()
    taken, taken_s = timed(
        lambda: collector.post(document, content_type="application/json", timeout=30)
    )
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    rss_after = collector.rss_bytes()
    figures(
        "large_json",
        refused_bytes=len(big),
        status=reply.status,
        seconds_to_refuse=round(refused_s, 3),
        healthz_s=round(healthz_s, 3),
        valid_json_bytes=len(document),
        valid_status=taken.status,
        valid_s=round(taken_s, 3),
        rss_growth_mb=round((rss_after - rss_before) / MiB, 1),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    assert reply.status == 413 and b"receive budget" in reply.body
    assert refused_s < 2.0
    assert taken.status == 200
    assert rss_after - rss_before < 40 * MiB


def test_queue_bytes_bound_what_waits_for_a_backend_that_is_down(
    collector_factory: Callable[..., CollectorProcess], tmp_path: Path
) -> None:
    backend = CountingSink(keep=False)  # bound, not listening: down
    collector = collector_factory(
        exporters=[http_exporter(backend)],
        limits={"max_memory_bytes": 64 * MiB, "max_queue_bytes": 4 * MiB},
    )
    rss_before = collector.rss_bytes()
    big_value = "x" * MiB
    taken = refused = 0
    accepted_spans = 0
    for _ in range(12):
        request, spans = valid_request(1)
        request.resource_spans[0].scope_spans[0].spans[1].attributes.add(
            key="blob"
        ).value.string_value = big_value
        reply = collector.post(request.SerializeToString())
        if reply.status == 200:
            taken += 1
            accepted_spans += spans
        else:
            assert reply.status == 503 and "retry-after" in reply.headers
            refused += 1
    samples = collector.samples()
    queued_bytes = metric_total(samples, "llmspans_collector_forward_queue_bytes")
    queued_spans = metric_total(samples, "llmspans_collector_forward_queue_spans")
    readyz = get(collector.metrics_port, "/readyz").status
    rss_held = collector.rss_bytes()
    backend.start()
    try:
        assert wait_until(lambda: backend.unique >= accepted_spans, WAIT_S)
    finally:
        backend.stop(keep_port=False)
    figures(
        "queue_bytes",
        requests=12,
        bytes_each=MiB,
        taken=taken,
        refused_503=refused,
        queue_bytes=int(queued_bytes),
        queue_spans=int(queued_spans),
        readyz=readyz,
        rss_growth_mb=round((rss_held - rss_before) / MiB, 1),
        spans_sent=accepted_spans,
        forwarded=backend.unique,
        lost=accepted_spans - backend.unique,
    )
    assert refused >= 6
    assert queued_bytes <= 4 * MiB
    assert readyz == 503
    assert rss_held - rss_before < 40 * MiB


def test_readyz_says_not_ready_while_full_batches_are_refused(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        assembly={"trace_idle_s": 30, "trace_timeout_s": 60, "max_inflight_spans": 1000},
    )
    request, first = valid_request(180)  # 900 spans: the bound nearly reached
    assert collector.post(request.SerializeToString()).status == 200
    ready_before = get(collector.metrics_port, "/readyz").status
    batch, spans = valid_request(60)  # 300 spans: does not fit
    refused = collector.post(batch.SerializeToString())
    ready_after = get(collector.metrics_port, "/readyz").status
    figures(
        "readyz_near_the_bound",
        inflight=first,
        batch=spans,
        ready_before_refusal=ready_before,
        refusal=refused.status,
        ready_while_refusing=ready_after,
    )
    assert refused.status == 429
    assert ready_after == 503


# --- operators see trouble; shutdown is bounded -------------------------------------


def test_backend_outage_is_logged_when_it_starts_and_ends(
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    backend = CountingSink()
    collector = collector_factory(exporters=[http_exporter(backend)])
    sent = 0
    for _ in range(10):
        request, spans = valid_request(2)
        post_until_taken(collector, request.SerializeToString())
        sent += spans
        time.sleep(0.2)
    backend.start()
    try:
        assert wait_until(lambda: backend.unique >= sent, WAIT_S)
    finally:
        backend.stop(keep_port=False)
    lines = [line for line in collector.log().splitlines() if "exporter" in line]
    started = [line for line in lines if "backend failing" in line]
    ended = [line for line in lines if "backend back after" in line]
    figures(
        "outage_logging",
        outage_s=2,
        log_lines=len(lines),
        spans_sent=sent,
        forwarded=backend.unique,
        lost=sent - backend.unique,
    )
    assert len(started) == 1, lines
    assert len(ended) == 1, lines
    assert len(lines) <= 4, lines


class MetricsPushSink:
    """An OTLP/HTTP metrics endpoint on loopback that keeps every pushed request."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        self.requests: list[Any] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(ExportMetricsServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def value(self, name: str) -> float:
        """The metric's summed points in the last push."""
        total = 0.0
        for request in self.requests[-1:]:
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        if metric.name == name:
                            total += sum(point.as_double for point in metric.sum.data_points)
        return total

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_sigterm_exits_within_the_shutdown_timeout_whatever_clients_and_backend_do(
    collector_factory: Callable[..., CollectorProcess],
) -> None:
    backend = CountingSink()  # bound, never listening: down for the whole test
    push = MetricsPushSink()
    timeout_s = 3.0
    try:
        collector = collector_factory(
            exporters=[http_exporter(backend)],
            metrics={
                "otlp": {
                    "endpoint": f"http://127.0.0.1:{push.port}/v1/metrics",
                    "interval_s": 3600,
                }
            },
            extra={"shutdown": {"timeout_s": timeout_s}},
        )
        sent = 0
        for _ in range(10):
            request, spans = valid_request(2)
            assert collector.post(request.SerializeToString()).status == 200
            sent += spans
        # a slow client: an upload that stalls after its first bytes
        slow = socket.create_connection(("127.0.0.1", collector.http_port), timeout=10)
        slow.sendall(
            b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
            b"Content-Length: 1000000\r\n\r\n" + b"\0" * 10_000
        )
        time.sleep(0.3)
        started = time.monotonic()
        code = collector.terminate(timeout=60)
        exit_s = time.monotonic() - started
        slow.close()
        log = collector.log()
        pushed_dropped = push.value("llmspans.collector.spans_dropped")
    finally:
        push.close()
        backend.stop(keep_port=False)
    figures(
        "sigterm_bounded",
        shutdown_timeout_s=timeout_s,
        exit_s=round(exit_s, 2),
        exit_code=code,
        spans_sent=sent,
        forwarded=0,
        lost=sent,
        dropped_pushed=int(pushed_dropped),
    )
    assert code == 0
    assert exit_s < timeout_s + 1.5
    assert f"dropping {sent} spans still queued at shutdown" in log
    assert pushed_dropped == sent


def test_ids_per_span_are_capped_for_attribution_and_forwarded_whole(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)], limits={"max_ids_per_span": 1000}
    )
    request, sent = valid_request(1)
    retrieval = request.resource_spans[0].scope_spans[0].spans[1]
    ids = [f"doc-{index}" for index in range(50_000)]
    set_attribute(retrieval, string_list("llmspans.retrieval.document_ids", ids))
    for attribute in retrieval.attributes:
        if attribute.key == "llmspans.retrieval.scores":
            del attribute.value.array_value.values[:]
            attribute.value.array_value.values.extend(
                any_value([0.5] * len(ids)).array_value.values
            )
    reply, seconds = timed(lambda: collector.post(request.SerializeToString()))
    more, more_spans = valid_request(5)
    assert collector.post(more.SerializeToString()).status == 200
    total = sent + more_spans
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    truncated = metric_total(collector.samples(), "llmspans_collector_ids_truncated_total")
    forwarded_ids = max(
        len(attribute.value.array_value.values)
        for span in sink.spans()
        for attribute in span.attributes
        if attribute.key == "llmspans.retrieval.document_ids"
    )
    figures(
        "ids_per_span",
        ids=len(ids),
        max_ids_per_span=1000,
        seconds=round(seconds, 3),
        truncated=int(truncated),
        forwarded_ids=forwarded_ids,
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    assert reply.status == 200
    assert truncated == 2 * (len(ids) - 1000)  # ids and scores
    assert forwarded_ids == len(ids)


def test_header_timeout_applies_to_later_requests_on_a_kept_alive_connection(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(
        exporters=[http_exporter(sink)], extra={"connections": {"header_timeout_s": 1.0}}
    )
    request, sent = valid_request(1)
    body = request.SerializeToString()
    head = (
        "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", collector.http_port), timeout=10) as sock:
        sock.sendall(head + body)
        first = sock.recv(4096)
        started = time.monotonic()
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")  # then nothing
        sock.settimeout(10)
        try:
            rest = sock.recv(4096)
        except OSError:
            rest = b""
        closed_after = time.monotonic() - started
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    figures(
        "header_timeout_kept_alive",
        first_status=first.split(b" ")[1].decode(),
        closed_after_s=round(closed_after, 2),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    assert first.startswith(b"HTTP/1.1 200")
    assert rest == b""
    assert closed_after < 5.0


@pytest.mark.parametrize("max_ids", [10_000, 1_000_000], ids=["capped", "uncapped"])
def test_spans_with_huge_id_lists_held_in_flight_stay_small(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink, max_ids: int
) -> None:
    # Spans of traces whose root never comes stay in flight until trace_timeout_s:
    # each keeps at most max_ids_per_span (the default, 10,000) of its 100,000 ids.
    # The uncapped run is the reference the capped one is compared with.
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        # no root: the retrieval-only traces stay until trace_timeout_s
        assembly={"trace_idle_s": 0.5, "trace_timeout_s": 60},
        limits={"max_ids_per_span": max_ids},
    )
    rss_before = collector.rss_bytes()
    stop_rss, rss = rss_sampler(collector)
    spans_sent = 0
    request_bytes = 0
    for number in range(10):
        request, _ = valid_request(1)
        retrieval = request.resource_spans[0].scope_spans[0].spans[1]
        del request.resource_spans[0].scope_spans[0].spans[:]
        ids = [f"span{number}-doc-{index}" for index in range(100_000)]
        set_attribute(retrieval, string_list("llmspans.retrieval.document_ids", ids))
        request.resource_spans[0].scope_spans[0].spans.append(retrieval)
        body = request.SerializeToString()
        request_bytes = len(body)
        assert collector.post(body, timeout=30).status == 200
        spans_sent += 1
    more, more_spans = valid_request(5)
    assert collector.post(more.SerializeToString()).status == 200
    total = spans_sent + more_spans
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    samples = collector.samples()
    inflight = metric_total(samples, "llmspans_collector_spans_inflight")
    rss_held = collector.rss_bytes()
    stop_rss.set()
    figures(
        f"huge_id_lists_in_flight_{'capped' if max_ids < 100_000 else 'uncapped'}",
        spans=spans_sent,
        ids_each=100_000,
        max_ids_per_span=max_ids,
        request_bytes_each=request_bytes,
        spans_inflight=int(inflight),
        truncated=int(metric_total(samples, "llmspans_collector_ids_truncated_total")),
        rss_before_mb=round(rss_before / MiB, 1),
        rss_peak_mb=round(max(rss) / MiB, 1),
        rss_held_mb=round(rss_held / MiB, 1),
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    assert inflight >= spans_sent
    if max_ids < 100_000:
        # uncapped, the same spans hold about 80 MB more (see the figures)
        assert rss_held - rss_before < 48 * MiB


# --- large valid requests: decoded off the event loop, bounded in memory --------------


def grpc_export_until_taken(port: int, body: bytes, deadline_s: float = 60.0) -> list[str]:
    """Export ``body`` over gRPC until it is taken, retrying RESOURCE_EXHAUSTED and
    UNAVAILABLE as an SDK exporter does when the reply carries a retry delay; returns
    the codes of the refused attempts."""
    deadline = time.monotonic() + deadline_s
    refused: list[str] = []
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 256 * MiB)]
    ) as channel:
        export = channel.unary_unary(GRPC_EXPORT_METHOD)
        while True:
            try:
                export(body, timeout=30)
                return refused
            except grpc.RpcError as error:
                code = error.code()
                assert code in (
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.UNAVAILABLE,
                ), (code, error.details())
                trailers = dict(error.trailing_metadata() or ())
                assert "google.rpc.retryinfo-bin" in trailers, (code, error.details())
                refused.append(code.name)
            assert time.monotonic() < deadline, f"not taken after {len(refused)} refusals"
            time.sleep(0.2)


def test_concurrent_large_grpc_calls_are_admitted_within_the_receive_budget(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    # 8 concurrent calls of about 3 MB each against a receive budget of 12 MiB: the
    # message limit is a quarter of it (3 MiB), reserved before a message is read.
    budget = 12 * MiB
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        limits={"max_memory_bytes": 64 * MiB, "max_receive_bytes": budget},
        extra={"connections": {"max_streams": 16}},
    )
    bodies = []
    sent = 0
    for _ in range(8):
        request, spans = valid_request(2400)
        bodies.append(request.SerializeToString())
        sent += spans
    rss_before = collector.rss_bytes()
    stop_rss, rss = rss_sampler(collector)
    refusals: Counter[str] = Counter()
    lock = threading.Lock()
    worst_healthz = 0.0
    peak_receive = 0.0

    def call(body: bytes) -> None:
        codes = grpc_export_until_taken(collector.grpc_port, body)
        with lock:
            refusals.update(codes)

    threads = [threading.Thread(target=call, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        _, seconds = timed(lambda: get(collector.metrics_port, "/healthz"))
        worst_healthz = max(worst_healthz, seconds)
        held = metric_total(collector.samples(), "llmspans_collector_receive_bytes")
        peak_receive = max(peak_receive, held)
        time.sleep(0.05)
    for thread in threads:
        thread.join(60)
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    stop_rss.set()
    figures(
        "concurrent_large_grpc_calls",
        calls=len(bodies),
        bytes_each=len(bodies[0]),
        receive_budget=budget,
        refusals=dict(refusals),
        receive_bytes_peak=int(peak_receive),
        healthz_worst_s=round(worst_healthz, 3),
        rss_before_mb=round(rss_before / MiB, 1),
        rss_peak_mb=round(max(rss) / MiB, 1),
        rss_growth_mb=round((max(rss) - rss_before) / MiB, 1),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    assert sink.unique == sent
    assert sum(refusals.values()) >= 1  # 8 x 3 MB never fit in 12 MiB at once
    assert peak_receive <= budget
    # measured from a client on the same two shared cores: includes its own waits
    assert worst_healthz < 2.5  # 0.5-1.1 s seen; a freeze is tens of s
    assert max(rss) - rss_before < 120 * MiB


class HealthzProbe:
    """Polls ``/healthz`` from a thread and keeps the worst answer time."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.worst = 0.0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            reply, seconds = timed(lambda: get(self.port, "/healthz", timeout=30))
            assert reply.status == 200
            self.worst = max(self.worst, seconds)
            self.polls += 1
            self._stop.wait(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(30)
        return self.worst


def test_a_large_valid_protobuf_request_leaves_the_event_loop_free(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    collector = collector_factory(exporters=[http_exporter(sink)])
    request, big_spans = valid_request(8000)  # 40,000 spans, about 8 MB
    body = request.SerializeToString()
    probe = HealthzProbe(collector.metrics_port)
    stop_valid = threading.Event()
    sent: list[int] = []
    valid = send_valid_alongside(collector, stop_valid, sent)
    time.sleep(0.3)
    reply, seconds = timed(lambda: collector.post(body, timeout=60))
    time.sleep(0.3)
    stop_valid.set()
    valid.join(30)
    worst = probe.stop()
    total = big_spans + sum(sent)
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    figures(
        "large_valid_protobuf",
        request_bytes=len(body),
        request_spans=big_spans,
        status=reply.status,
        request_s=round(seconds, 3),
        healthz_polls=probe.polls,
        healthz_worst_s=round(worst, 3),
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    assert reply.status == 200
    assert sink.unique == total
    # taken whole, the request held the loop for its ~1 s of assembly; measured from
    # a client on the same two shared cores, which adds its own waits
    assert worst < 2.5  # 0.5-0.6 s seen; whole, it took seconds


def test_citation_cost_stays_linear_for_one_huge_run(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    # The shape: one run, a retrieval span of 100,000 ids whose context
    # selection keeps them all, and 4,000 generation spans citing some of them.
    # max_ids_per_span is raised so that attribution really reads every id.
    ids_count, generations = 100_000, 4000
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        limits={"max_ids_per_span": ids_count},
        assembly={"max_trace_spans": 10_000},
    )
    spans = pipeline_trace("huge")
    root, retrieval, context, generation, action = spans
    ids = [f"doc-{index}" for index in range(ids_count)]
    set_attribute(retrieval, string_list("llmspans.retrieval.document_ids", ids))
    for attribute in retrieval.attributes:
        if attribute.key == "llmspans.retrieval.scores":
            del attribute.value.array_value.values[:]
            attribute.value.array_value.values.extend(
                any_value([0.5] * ids_count).array_value.values
            )
    set_attribute(context, string_list("llmspans.context.input_ids", ids))
    set_attribute(context, string_list("llmspans.context.selected_ids", ids))
    many = []
    for index in range(generations):
        copy = Span()
        copy.CopyFrom(generation)
        copy.span_id = new_span_id()
        set_attribute(copy, kv("llmspans.generation.citations", [f"doc-{index * 7 % ids_count}"]))
        many.append(copy)
    body = request_of([root, retrieval, context, *many, action]).SerializeToString()
    run_spans = 4 + generations
    probe = HealthzProbe(collector.metrics_port)
    stop_valid = threading.Event()
    sent: list[int] = []
    valid = send_valid_alongside(collector, stop_valid, sent)
    time.sleep(0.3)
    reply, seconds = timed(lambda: collector.post(body, timeout=60))
    assert wait_until(
        lambda: (
            metric_total(collector.samples(), "llmspans_task_outcomes_total", pipeline="huge") > 0
            and sink.unique >= run_spans
        ),
        WAIT_S,
    )
    time.sleep(1.0)  # the run is finalised after trace_idle_s; valid traffic goes on
    stop_valid.set()
    valid.join(30)
    worst = probe.stop()
    total = run_spans + sum(sent)
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    samples = collector.samples()
    # one observation per generation span of the huge run (the valid runs are "rag")
    citation_runs = metric_total(
        samples, "llmspans_generation_citation_precision_count", pipeline="huge"
    )
    outcomes = metric_total(samples, "llmspans_task_outcomes_total", pipeline="huge")
    figures(
        "citation_cost",
        ids=ids_count,
        generations=generations,
        request_bytes=len(body),
        status=reply.status,
        request_s=round(seconds, 3),
        healthz_worst_s=round(worst, 3),
        citation_precision_observations=int(citation_runs),
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    assert reply.status == 200
    assert sink.unique == total
    assert outcomes == 1
    assert citation_runs == generations
    # 33 s before attribution was made linear; one trace is evaluated in one step
    assert worst < 2.5


def test_megabyte_pipeline_names_leave_metrics_small_and_the_real_pipeline_labelled(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    # 10 runs named with 200 KB each (the issue: 1 MB names grew /metrics to 934 MB)
    # against 5 label slots; "rag" is on the allow-list and keeps its label.
    collector = collector_factory(
        exporters=[http_exporter(sink)],
        metrics={"max_pipelines": 5, "pipelines": ["rag"]},
    )
    metrics_before = len(collector.metrics_text().encode())
    sent = 0
    name_bytes = 200_000
    for number in range(10):
        name = f"{number}-" + "x" * name_bytes
        request = request_of(pipeline_trace(name))
        assert collector.post(request.SerializeToString(), timeout=30).status == 200
        sent += 5
        valid, spans = valid_request(1)
        post_until_taken(collector, valid.SerializeToString())
        sent += spans
    rag_runs = 10
    assert wait_until(lambda: sink.unique >= sent, WAIT_S)
    assert wait_until(
        lambda: metric_total(collector.samples(), "llmspans_task_outcomes_total") >= 20, WAIT_S
    )
    text, scrape_s = timed(lambda: get(collector.metrics_port, "/metrics"))
    samples = parse_metrics(text.body.decode())
    pipelines = label_values(samples, "llmspans_task_outcomes_total", "pipeline")
    truncated = metric_total(samples, "llmspans_collector_labels_truncated_total")
    figures(
        "pipeline_name_length",
        names=10,
        name_bytes=name_bytes,
        metrics_bytes_before=metrics_before,
        metrics_bytes_after=len(text.body),
        scrape_s=round(scrape_s, 3),
        longest_label=max(len(p.encode()) for p in pipelines),
        pipeline_labels=len(pipelines),
        labels_truncated=int(truncated),
        spans_sent=sent,
        forwarded=sink.unique,
        lost=sent - sink.unique,
    )
    assert max(len(p.encode()) for p in pipelines) <= 128
    assert truncated >= 10
    assert len(text.body) < metrics_before + 400_000
    assert "rag" in pipelines and "other" in pipelines
    assert metric_total(samples, "llmspans_task_outcomes_total", pipeline="rag") == rag_runs
    assert sink.unique == sent


def test_a_span_ending_at_the_end_of_time_adds_at_most_the_clamp(
    collector_factory: Callable[..., CollectorProcess], sink: CountingSink
) -> None:
    week = 7 * 24 * 3600.0
    collector = collector_factory(exporters=[http_exporter(sink)])
    valid, sent = valid_request(3)
    post_until_taken(collector, valid.SerializeToString())
    assert wait_until(
        lambda: metric_total(collector.samples(), "llmspans_task_outcomes_total") >= 3, WAIT_S
    )
    before = metric_total(collector.samples(), "llmspans_task_duration_seconds_sum")
    spans = pipeline_trace()
    spans[0].start_time_unix_nano = 0
    spans[0].end_time_unix_nano = 2**64 - 1
    assert collector.post(request_of(spans).SerializeToString()).status == 200
    more, more_spans = valid_request(2)
    post_until_taken(collector, more.SerializeToString())
    total = sent + len(spans) + more_spans
    assert wait_until(lambda: sink.unique >= total, WAIT_S)
    assert wait_until(
        lambda: metric_total(collector.samples(), "llmspans_task_outcomes_total") >= 6, WAIT_S
    )
    samples = collector.samples()
    after = metric_total(samples, "llmspans_task_duration_seconds_sum")
    clamped = metric_total(samples, "llmspans_collector_durations_clamped_total")
    figures(
        "duration_clamp",
        start_ns=0,
        end_ns=2**64 - 1,
        duration_sum_growth_s=round(after - before, 3),
        clamp_s=week,
        durations_clamped=int(clamped),
        spans_sent=total,
        forwarded=sink.unique,
        lost=total - sink.unique,
    )
    assert week <= after - before <= week + 1.0
    assert clamped == 1
    assert sink.unique == total
