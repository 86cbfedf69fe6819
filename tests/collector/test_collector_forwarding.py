"""Forwarding: exporter retry timing, spans still queued when the collector stops, and
the pipeline spans that leave enriched with the verdict."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from llmspans import _attributes as A
from llmspans.collector.config import CollectorSettings, FileExporter, OtlpExporter
from llmspans.collector.forwarding import FileWriter, Forwarder, HttpExporter, retry_wait
from llmspans.collector.metrics import MetricsStore
from llmspans.collector.processor import Processor


def test_server_delays_get_jitter_on_top_never_taken_off() -> None:
    rng = random.Random(7)
    for delay in (0.0, 0.5, 2.0, 30.0):
        waits = [retry_wait(delay, 0.1, rng.uniform) for _ in range(200)]
        assert min(waits) >= delay
        assert max(waits) <= delay + min(0.2 * delay, 1.0)
        if delay:
            # Senders told the same delay spread out instead of retrying in lockstep.
            assert len({round(wait, 6) for wait in waits}) > 100
            assert max(waits) - min(waits) > 0.1 * min(0.2 * delay, 1.0)
    backoffs = [retry_wait(None, 1.0, rng.uniform) for _ in range(200)]
    assert 0.8 <= min(backoffs) < max(backoffs) <= 1.2


def _refusing_socket() -> socket.socket:
    """A bound socket that never listens: its port refuses connections, and no other
    socket can take the port while this one stays open."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    return probe


def _payload(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for index in range(spans):
        scope_spans.spans.add(
            trace_id=b"\x01" * 16, span_id=(index + 1).to_bytes(8, "big"), name="s"
        )
    return request.SerializeToString()


async def test_spans_left_at_shutdown_are_counted_as_dropped() -> None:
    with _refusing_socket() as refusing:
        await _spans_left_at_shutdown(int(refusing.getsockname()[1]))


async def _spans_left_at_shutdown(dead_port: int) -> None:
    metrics = MetricsStore()
    config = OtlpExporter(
        protocol="http",
        endpoint=f"http://127.0.0.1:{dead_port}/v1/traces",
        timeout_s=1.0,
        retry_max_elapsed_s=60.0,
        concurrency=1,
    )
    exporter = HttpExporter(config, "dead", metrics)
    await exporter.start()
    exporter.submit(_payload(5), 5)
    for _ in range(6000):  # the worker takes the batch and starts retrying it
        if exporter.sending_spans:
            break
        await asyncio.sleep(0.01)
    assert exporter.sending_spans == 5
    exporter.submit(_payload(3), 3)  # waits behind the batch being retried
    assert not await exporter.flush(0.2)
    await exporter.close()
    assert metrics.health_value("llmspans_collector_spans_dropped", exporter="dead") == 8
    assert metrics.health_value("llmspans_collector_spans_forwarded") == 0
    assert exporter.queued_spans == 0


def _string(span: Span, key: str, value: str) -> None:
    span.attributes.add(key=key).value.string_value = value


async def test_the_collector_verdict_replaces_the_senders_and_keeps_the_rest(
    tmp_path: Path,
) -> None:
    metrics = MetricsStore()
    output = tmp_path / "forwarded.jsonl"
    writer = FileWriter(FileExporter(protocol="file", path=output), "file", metrics)
    clock = [100.0]
    processor = Processor(CollectorSettings(), metrics, Forwarder([writer]), clock=lambda: clock[0])
    await writer.start()

    trace_id = b"\x0a" * 16
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add(schema_url="https://schema/resource")
    resource_spans.resource.attributes.add(key="service.name").value.string_value = "svc"
    scope_spans = resource_spans.scope_spans.add(schema_url="https://schema/scope")
    scope_spans.scope.name = "app"
    root = scope_spans.spans.add(
        trace_id=trace_id, span_id=b"\x01" * 8, name="invoke_workflow rag", end_time_unix_nano=9
    )
    _string(root, A.STAGE, A.STAGE_PIPELINE)
    _string(root, A.OUTCOME, "success")  # set by the sender: replaced
    _string(root, "app.before", "kept")
    _string(root, A.FAILURE_REASON, "stale")  # set by the sender: removed
    _string(root, "app.after", "x" * 300)
    root.attributes.add(key=A.TASK_COMPLETED).value.bool_value = True
    child = scope_spans.spans.add(
        trace_id=trace_id, span_id=b"\x02" * 8, parent_span_id=b"\x01" * 8, name="retrieve"
    )
    _string(child, A.STAGE, A.STAGE_RETRIEVAL)
    child.status.code = Status.STATUS_CODE_ERROR  # the run fails in retrieval
    data = request.SerializeToString()

    accepted = processor.accept(ExportTraceServiceRequest.FromString(data), data)
    assert accepted.spans == 2 and not accepted.rejected
    clock[0] += 1000.0
    assert processor.sweep() == 1
    assert await writer.flush(5.0)
    await writer.close()

    forwarded = [
        json_format.ParseDict(_protobuf_ids(json.loads(line)), ExportTraceServiceRequest())
        for line in output.read_text().splitlines()
    ]
    spans = {
        span.span_id: (resource, scope, span)
        for message in forwarded
        for resource in message.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    }
    assert set(spans) == {b"\x01" * 8, b"\x02" * 8}
    resource, scope, enriched = spans[b"\x01" * 8]
    assert resource.schema_url == "https://schema/resource"
    assert resource.resource.attributes[0].value.string_value == "svc"
    assert scope.schema_url == "https://schema/scope" and scope.scope.name == "app"
    keys = [kv.key for kv in enriched.attributes]
    assert keys == [
        A.STAGE,
        "app.before",
        "app.after",
        A.TASK_COMPLETED,
        A.OUTCOME,
        A.FAILURE_STAGE,
        A.FAILURE_REASON,
    ]
    values = {kv.key: kv.value for kv in enriched.attributes}
    assert values[A.OUTCOME].string_value == "failure"
    assert values[A.FAILURE_STAGE].string_value == A.STAGE_RETRIEVAL
    assert values[A.FAILURE_REASON].string_value == "error"
    assert values["app.after"].string_value == "x" * 300
    assert enriched.name == "invoke_workflow rag" and enriched.end_time_unix_nano == 9
    assert spans[b"\x02" * 8][2] == child  # other spans go out as they came


def _protobuf_ids(value: Any) -> Any:
    """OTLP JSON (hex ids) into protobuf's JSON mapping (base64 ids) for ParseDict."""
    if isinstance(value, dict):
        return {
            key: (
                base64.b64encode(bytes.fromhex(item)).decode()
                if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str)
                else _protobuf_ids(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_protobuf_ids(item) for item in value]
    return value


async def test_an_outage_is_logged_when_it_starts_while_it_lasts_and_when_it_ends(
    monkeypatch: Any, caplog: Any
) -> None:
    import logging

    from aiohttp import web

    from llmspans.collector import forwarding

    monkeypatch.setattr(forwarding, "OUTAGE_SUMMARY_S", 0.3)
    healthy = asyncio.Event()

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200 if healthy.is_set() else 503)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    metrics = MetricsStore()
    config = OtlpExporter(
        protocol="http", endpoint=f"http://127.0.0.1:{port}/v1/traces", concurrency=1
    )
    exporter = HttpExporter(config, "flaky", metrics)
    with caplog.at_level(logging.WARNING, logger="llmspans.collector.forwarding"):
        await exporter.start()
        exporter.submit(_payload(4), 4)
        await asyncio.sleep(1.5)  # many failed attempts: 0.1 s backoff doubling
        healthy.set()
        assert await exporter.flush(10.0)
        await exporter.close()
    await runner.cleanup()
    lines = [r.getMessage() for r in caplog.records if "flaky" in r.getMessage()]
    assert sum("backend failing" in line for line in lines) == 1
    assert sum("backend still failing" in line for line in lines) >= 1
    assert sum("backend back after" in line for line in lines) == 1
    assert len(lines) <= 8  # a summary per interval, not a line per attempt
    assert metrics.health_value("llmspans_collector_spans_forwarded", exporter="flaky") == 4


async def test_the_first_retry_waits_the_delay_the_backend_asked_for() -> None:
    """A 503 with ``Retry-After: 1`` on the very first attempt: the next attempt comes
    a second later (plus jitter), not after the 0.1 s backoff."""
    import time

    from aiohttp import web

    attempts: list[float] = []

    async def traces(request: web.Request) -> web.Response:
        await request.read()
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            return web.Response(status=503, headers={"Retry-After": "1"})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    metrics = MetricsStore()
    config = OtlpExporter(
        protocol="http", endpoint=f"http://127.0.0.1:{port}/v1/traces", concurrency=1
    )
    exporter = HttpExporter(config, "asked", metrics)
    try:
        await exporter.start()
        exporter.submit(_payload(3), 3)
        assert await exporter.flush(10.0)
    finally:
        await exporter.close()
        await runner.cleanup()
    assert len(attempts) == 2
    gap = attempts[1] - attempts[0]
    print(f"\n[figures] first retry after {gap:.3f} s (asked: 1 s, jitter at most 0.2 s)")
    assert 1.0 <= gap < 2.0
    assert metrics.health_value("llmspans_collector_spans_forwarded", exporter="asked") == 3
