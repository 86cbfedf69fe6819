"""Exporter retry timing and what happens to spans still queued when the collector stops."""

from __future__ import annotations

import asyncio
import random
import socket

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.config import OtlpExporter
from collector.forwarding import HttpExporter, retry_wait
from collector.metrics import MetricsStore


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


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _payload(spans: int) -> bytes:
    request = ExportTraceServiceRequest()
    scope_spans = request.resource_spans.add().scope_spans.add()
    for index in range(spans):
        scope_spans.spans.add(
            trace_id=b"\x01" * 16, span_id=(index + 1).to_bytes(8, "big"), name="s"
        )
    return request.SerializeToString()


async def test_spans_left_at_shutdown_are_counted_as_dropped() -> None:
    metrics = MetricsStore()
    config = OtlpExporter(
        protocol="http",
        endpoint=f"http://127.0.0.1:{_dead_port()}/v1/traces",
        timeout_s=1.0,
        retry_max_elapsed_s=60.0,
        concurrency=1,
    )
    exporter = HttpExporter(config, "dead", metrics)
    await exporter.start()
    exporter.submit(_payload(5), 5)
    for _ in range(200):  # the worker takes the batch and starts retrying it
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
