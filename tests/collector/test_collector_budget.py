"""Byte budgets: the configuration's shares, the counters, admission in bytes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder
from llmspans.collector.budget import ByteBudget
from llmspans.collector.config import (
    BUDGET_SHARES,
    CollectorSettings,
    ConfigError,
    OtlpExporter,
    load_settings,
)
from llmspans.collector.forwarding import Forwarder, HttpExporter
from llmspans.collector.metrics import MetricsStore
from llmspans.collector.processor import Backpressure, Processor, TooLarge

MiB = 1024 * 1024


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, list):
        array = ArrayValue(values=[AnyValue(string_value=str(item)) for item in value])
        return KeyValue(key=key, value=AnyValue(array_value=array))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def pipeline_request(document_ids: list[str] | None = None) -> ExportTraceServiceRequest:
    """One ended run: a pipeline root and a retrieval span under it."""
    trace_id = os.urandom(16)
    root_id, child_id = os.urandom(8), os.urandom(8)
    root = Span(
        trace_id=trace_id,
        span_id=root_id,
        name="invoke_workflow rag",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=[_kv("llmspans.stage", "pipeline"), _kv("llmspans.pipeline", "rag")],
    )
    retrieval = Span(
        trace_id=trace_id,
        span_id=child_id,
        parent_span_id=root_id,
        name="retrieval faq",
        start_time_unix_nano=1,
        end_time_unix_nano=2,
        attributes=[
            _kv("llmspans.stage", "retrieval"),
            _kv("llmspans.retrieval.document_ids", document_ids or ["d1", "d2"]),
        ],
    )
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[root, retrieval])])]
    )


def test_byte_budget_reserves_refuses_and_releases() -> None:
    budget = ByteBudget("receive", 100)
    assert budget.reserve(60)
    assert not budget.reserve(50)  # nothing taken when it does not fit
    assert budget.used == 60 and not budget.near
    assert budget.reserve(40) and budget.near and budget.peak == 100
    budget.release(100)
    assert budget.used == 0
    assert budget.fits(100) and not budget.fits(101)


def test_budgets_default_to_shares_of_one_total() -> None:
    limits = CollectorSettings().limits
    total = limits.max_memory_bytes
    assert total == 384 * MiB
    assert limits.max_receive_bytes == int(total * BUDGET_SHARES["receive"])
    assert limits.max_queue_bytes == int(total * BUDGET_SHARES["queue"])
    assert limits.max_inflight_bytes == int(total * BUDGET_SHARES["inflight"])
    assert limits.max_receive_bytes + limits.max_queue_bytes + limits.max_inflight_bytes <= total
    assert limits.request_limit == limits.max_request_bytes  # 64 MiB fits the 96 MiB budget


def test_budgets_above_the_total_are_a_configuration_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("limits: {max_memory_bytes: 16777216, max_queue_bytes: 16777216}\n")
    with pytest.raises(ConfigError, match="exceed max_memory_bytes"):
        load_settings(config)


def test_the_request_limit_is_never_above_the_receive_budget() -> None:
    limits = CollectorSettings(limits={"max_memory_bytes": 64 * MiB}).limits
    assert limits.request_limit == limits.max_receive_bytes == 16 * MiB


def test_exporter_room_counts_bytes_as_well_as_spans() -> None:
    async def check() -> None:
        config = OtlpExporter(protocol="http", endpoint="http://127.0.0.1:9/v1/traces")
        exporter = HttpExporter(config, "e", MetricsStore())
        exporter.queue_bytes = 1000
        assert exporter.room(1, 1000)
        exporter.submit(b"x" * 600, 1)
        assert exporter.queued_bytes == 600
        assert exporter.room(1, 400) and not exporter.room(1, 401)
        assert Forwarder([exporter]).room(1, 400)

    asyncio.run(check())


def test_admission_refuses_when_the_assembler_holds_too_many_bytes() -> None:
    settings = CollectorSettings(limits={"max_memory_bytes": 64 * MiB})
    processor = Processor(settings, MetricsStore(), Forwarder([]))
    request = pipeline_request()
    body = request.SerializeToString()
    processor.accept(request, body)  # the assembler keeps no byte count: admitted
    processor.assembler.inflight_bytes = settings.limits.max_inflight_bytes  # type: ignore[attr-defined]
    with pytest.raises(Backpressure) as refused:
        processor.accept(request, body)
    assert refused.value.status == 429 and refused.value.reason == "inflight_bytes"
    assert processor.overloaded  # /readyz: not ready while refusing


def test_a_request_larger_than_an_exporter_queue_in_bytes_is_too_large() -> None:
    async def check() -> None:
        settings = CollectorSettings()
        config = OtlpExporter(protocol="http", endpoint="http://127.0.0.1:9/v1/traces")
        exporter = HttpExporter(config, "e", MetricsStore())
        exporter.queue_bytes = 100
        processor = Processor(settings, MetricsStore(), Forwarder([exporter]))
        request = pipeline_request()
        with pytest.raises(TooLarge, match="bytes"):
            processor.accept(request, request.SerializeToString())

    asyncio.run(check())


def test_the_slim_decoder_keeps_at_most_max_ids_per_list() -> None:
    request = pipeline_request(document_ids=[f"d{index}" for index in range(50)])
    slim = SLIM_EXPORT_REQUEST.FromString(request.SerializeToString())
    spans = [s for r in slim.resource_spans for sc in r.scope_spans for s in sc.spans]
    decoder = SlimDecoder(max_ids=10)
    records = [decoder.record(span) for span in spans]
    lengths = [len(r.document_ids) for r in records if r.document_ids]
    assert lengths and max(lengths) == 10
    assert decoder.ids_truncated >= 40
    unlimited = SlimDecoder()
    assert max(len(unlimited.record(span).document_ids or ()) for span in spans) == 50
