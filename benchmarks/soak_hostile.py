"""Hostile soak: valid load next to every attack of one hostile sender, for minutes.

    python benchmarks/soak_hostile.py [--seconds 300] [--memory-mib 384]

One llmspans collector (its default bounds, ``limits.max_memory_bytes`` set from
``--memory-mib``) forwarding to a counting sink, all on 127.0.0.1. While a valid
sender posts 512-span batches (retrying 429 / 503 as the SDK exporters do), other
threads keep up, each at a bounded rate and count:

- slowloris: up to 200 connections that send half a header and stall (reopened
  when the collector closes them);
- stalled uploads: 4 at a time, each declaring 32 MB and sending 1 MB;
- OTLP/JSON bodies of 24 MB (refused before parsing with the default budget);
- gRPC calls of 80 MB (above ``max_request_bytes``: refused by the runtime);
- spans with 100,000 document ids (valid: they count as sent).

Sampled every second: the collector's RSS and the latency of ``/healthz``. At the
end it checks that every valid span taken was forwarded and that RSS stayed under
``--memory-mib`` plus the process's own baseline, and writes
``benchmarks/out/soak_hostile.json``. Not part of the test suite (the reliability
tests play each attack on its own, scaled to seconds).
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from collections import Counter
from typing import Any

from _common import http_get, http_post, machine, wait_until, write_result
from _otlp import LoadShape, RequestBuilder
from _targets import LlmspansCollector
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmspans import _attributes as A

MiB = 1024 * 1024
GRPC_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = "application/x-protobuf"


class Soak:
    def __init__(self, collector: LlmspansCollector, seconds: float) -> None:
        self.collector = collector
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rss: list[int] = []
        self.healthz_s: list[float] = []
        self.url = collector.http_endpoint()

    def running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def count(self, key: str, value: int = 1) -> None:
        with self.lock:
            self.counts[key] += value

    def post_until_taken(self, body: bytes, spans: int) -> None:
        while not self.stop.is_set():
            try:
                status, _ = http_post(self.url, body, PROTOBUF, timeout=30)
            except OSError:
                status = 0
            if status == 200:
                self.count("valid_spans_taken", spans)
                return
            self.count(f"valid_retried_{status}")
            time.sleep(0.2)

    # --- the threads ---------------------------------------------------------------

    def valid(self) -> None:
        builder = RequestBuilder(LoadShape())
        while self.running():
            spans: list[Span] = []
            while len(spans) < 512:
                spans.extend(builder.run_spans(f"p{len(spans) % 10}"))
            self.post_until_taken(_request(spans).SerializeToString(), len(spans))

    def many_ids(self) -> None:
        builder = RequestBuilder(LoadShape())
        ids = [f"doc-{index}" for index in range(100_000)]
        while self.running():
            spans = builder.run_spans("ids")
            for span in spans:
                for attribute in span.attributes:
                    if attribute.key == A.RETRIEVAL_DOCUMENT_IDS:
                        attribute.value.array_value.CopyFrom(
                            ArrayValue(values=[AnyValue(string_value=i) for i in ids])
                        )
            self.post_until_taken(_request(spans).SerializeToString(), len(spans))
            self.stop.wait(2.0)

    def slowloris(self) -> None:
        socks: list[socket.socket] = []
        while self.running():
            alive = []
            for sock in socks:
                sock.settimeout(0)
                try:
                    closed = sock.recv(1) == b""
                except BlockingIOError:
                    closed = False
                except OSError:
                    closed = True
                if closed:
                    sock.close()
                    self.count("slowloris_closed_by_collector")
                else:
                    alive.append(sock)
            socks = alive
            while len(socks) < 200:
                try:
                    sock = socket.create_connection(("127.0.0.1", self.collector.http_port), 2)
                    sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-")
                except OSError:
                    self.count("slowloris_connect_failed")
                    break
                socks.append(sock)
                self.count("slowloris_opened")
            self.stop.wait(0.5)
        for sock in socks:
            sock.close()

    def stalled_upload(self) -> None:
        while self.running():
            try:
                with socket.create_connection(("127.0.0.1", self.collector.http_port), 5) as sock:
                    head = (
                        "POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                        f"Content-Type: {PROTOBUF}\r\nContent-Length: {32 * MiB}\r\n\r\n"
                    )
                    sock.sendall(head.encode() + b"\0" * MiB)
                    sock.settimeout(60)
                    answer = sock.recv(64)
                    status = answer.split()[1].decode() if answer.startswith(b"HTTP") else "none"
                    self.count(f"stalled_upload_{status}")
            except OSError:
                self.count("stalled_upload_error")

    def big_json(self) -> None:
        body = b'{"resourceSpans": [' + b" " * (24 * MiB) + b"]}"
        while self.running():
            try:
                status, _ = http_post(self.url, body, "application/json", timeout=60)
            except OSError:
                status = 0
            self.count(f"big_json_{status}")
            self.stop.wait(1.0)

    def big_grpc(self) -> None:
        import grpc

        body = b"\x0a" + b"\xff" * (80 * MiB)
        target = self.collector.grpc_endpoint()
        options = [("grpc.max_send_message_length", -1)]
        with grpc.insecure_channel(target, options=options) as channel:
            export = channel.unary_unary(GRPC_EXPORT)
            while self.running():
                try:
                    export(body, timeout=30)
                    self.count("big_grpc_OK")
                except grpc.RpcError as error:
                    self.count(f"big_grpc_{error.code().name}")
                self.stop.wait(1.0)

    def sample(self) -> None:
        ps = self.collector.proc.ps
        health = f"http://127.0.0.1:{self.collector.metrics_port}/healthz"
        while self.running():
            self.rss.append(ps.memory_info().rss)
            started = time.monotonic()
            try:
                http_get(health, timeout=10)
                self.healthz_s.append(time.monotonic() - started)
            except OSError:
                self.healthz_s.append(10.0)
            self.stop.wait(1.0)

    def run(self) -> None:
        workers = [
            self.valid,
            self.valid,
            self.many_ids,
            self.slowloris,
            self.big_json,
            self.big_grpc,
            self.sample,
            *[self.stalled_upload] * 4,
        ]
        threads = [threading.Thread(target=work, daemon=True) for work in workers]
        for thread in threads:
            thread.start()
        while time.monotonic() < self.deadline:
            time.sleep(0.5)
        self.stop.set()
        for thread in threads:
            thread.join(90)


def _request(spans: list[Span]) -> ExportTraceServiceRequest:
    resource = {"attributes": [KeyValue(key="service.name", value=AnyValue(string_value="soak"))]}
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--memory-mib", type=int, default=384)
    args = parser.parse_args(argv)
    env = {"LLMSPANS_COLLECTOR__LIMITS__MAX_MEMORY_BYTES": str(args.memory_mib * MiB)}
    collector = LlmspansCollector("llmspans-soak-hostile", trace_idle_s=0.5, extra_env=env)
    try:
        baseline = collector.proc.ps.memory_info().rss
        soak = Soak(collector, args.seconds)
        soak.run()
        taken = soak.counts["valid_spans_taken"]
        sink = collector.sink
        assert sink is not None
        try:
            wait_until(lambda: sink.stats()["spans"] >= taken, 120, what="forwarding")
            delivered = True
        except TimeoutError:
            delivered = False
        forwarded = sink.stats()["spans"]
        metrics = collector.metrics()
    finally:
        collector.stop()
    peak = max(soak.rss) if soak.rss else 0
    result: dict[str, Any] = {
        "benchmark": "soak_hostile",
        "machine": machine(),
        "seconds": args.seconds,
        "memory_mib": args.memory_mib,
        "counts": dict(soak.counts),
        "valid_spans_taken": taken,
        "forwarded": forwarded,
        "lost": max(0, taken - forwarded),
        "rss_baseline_mib": round(baseline / MiB, 1),
        "rss_peak_mib": round(peak / MiB, 1),
        "healthz_max_s": round(max(soak.healthz_s, default=0.0), 3),
        "connections_refused": {
            key: value
            for key, value in metrics.items()
            if key.startswith("llmspans_collector_connections_refused_total{")
        },
        "ids_truncated": metrics.get("llmspans_collector_ids_truncated_total", 0.0),
    }
    path = write_result("soak_hostile", result)
    print(path)
    for key, value in result.items():
        if key != "machine":
            print(f"{key}: {value}", file=sys.stderr)
    ok = delivered and peak <= baseline + args.memory_mib * MiB
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
