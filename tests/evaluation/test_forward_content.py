"""What the collector forwards of sampled runs' content: content recorded only for
the judge (spans marked ``llmspans.evaluation.sampled_content``) is stripped unless
``evaluation.forward_content``; everything else passes unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans.collector.config import CollectorSettings, Evaluation, FileExporter
from llmspans.collector.evaluation import request_without_content, without_content
from llmspans.collector.forwarding import FileWriter, Forwarder
from llmspans.collector.metrics import MetricsStore
from llmspans.collector.processor import Processor

from . import scenario

Tracing = tuple[TracerProvider, InMemorySpanExporter]


async def _forward(data: bytes, settings: CollectorSettings, tmp_path: Path) -> list[Any]:
    """Run ``data`` through a collector; the spans it forwarded (OTLP JSON)."""
    metrics = MetricsStore()
    output = tmp_path / "forwarded.jsonl"
    writer = FileWriter(FileExporter(protocol="file", path=output), "file", metrics)
    clock = [100.0]
    processor = Processor(settings, metrics, Forwarder([writer]), clock=lambda: clock[0])
    await writer.start()
    processor.accept(ExportTraceServiceRequest.FromString(data), data)
    clock[0] += 1000.0
    processor.sweep()
    if processor.evaluation is not None:
        assert processor.evaluation.runner.drain(10.0)
        processor.collect_evaluations()
    processor.drain()
    assert await writer.flush(5.0)
    await writer.close()
    return [
        span
        for line in output.read_text().splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def _by_trace(spans: list[Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """trace id -> span name -> attributes (OTLP JSON values)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for span in spans:
        attributes = {kv["key"]: kv["value"] for kv in span.get("attributes", [])}
        found.setdefault(span["traceId"], {})[span["name"]] = attributes
    return found


def _mixed(tracing: Tracing) -> tuple[bytes, dict[str, Any]]:
    """Two runs of each kind: sampled with capture off, sampled with capture on,
    unsampled (with content captured); and the content each span was recorded with."""
    provider, exporter = tracing
    tracer = provider.get_tracer("t")
    scenario.record_runs(tracer, scenario.RUNS[:2])
    scenario.record_runs(tracer, scenario.RUNS[4:6], captured=True)
    scenario.record_runs(tracer, scenario.RUNS[7:9], sampled=False)
    finished = exporter.get_finished_spans()
    recorded = {
        f"{span.context.trace_id:032x}/{span.name}": dict(span.attributes or {})
        for span in finished
    }
    return encode_spans(finished).SerializeToString(), recorded


def _check(forwarded: list[Any], recorded: dict[str, Any], *, stripped: bool) -> None:
    traces = _by_trace([s for s in forwarded if not s["name"].startswith("evaluate ")])
    assert len(traces) == 6
    kinds = {"judge_only": 0, "kept": 0}
    for trace_id, spans in traces.items():
        root = spans["invoke_workflow support"]
        marked = A.EVALUATION_SAMPLED_CONTENT in spans["chat m"]
        judge_only = A.EVALUATION_SAMPLED in root and marked
        kinds["judge_only" if judge_only else "kept"] += 1
        for name in ("retrieval kb", "chat m"):
            attributes = spans[name]
            content = A.CONTENT_ATTRIBUTES & set(attributes)
            original = recorded[f"{trace_id}/{name}"]
            if judge_only and stripped:
                assert not content, (name, content)
            else:
                assert content == A.CONTENT_ATTRIBUTES & set(original)
                for key in content:
                    assert attributes[key]["stringValue"] == original[key]
            # ids and the rest always stay
            assert A.STAGE in attributes
        ids = spans["retrieval kb"][A.RETRIEVAL_DOCUMENT_IDS]["arrayValue"]["values"]
        assert len(ids) == 2
    assert kinds == {"judge_only": 2, "kept": 4}


async def test_only_content_recorded_for_the_judge_is_stripped(
    tracing: Tracing, tmp_path: Path
) -> None:
    data, recorded = _mixed(tracing)
    settings = CollectorSettings(
        evaluation=Evaluation(evaluators=["tests.evaluation.judges:judge"])
    )
    _check(await _forward(data, settings, tmp_path), recorded, stripped=True)


async def test_a_collector_that_does_not_judge_strips_it_too(
    tracing: Tracing, tmp_path: Path
) -> None:
    data, recorded = _mixed(tracing)
    _check(await _forward(data, CollectorSettings(), tmp_path), recorded, stripped=True)


async def test_forward_content_keeps_it(tracing: Tracing, tmp_path: Path) -> None:
    data, recorded = _mixed(tracing)
    settings = CollectorSettings(evaluation=Evaluation(forward_content=True))
    _check(await _forward(data, settings, tmp_path), recorded, stripped=False)


def _kv(key: str, **value: Any) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def _request(*spans: Span) -> bytes:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request.SerializeToString()


def _span(name: str, *attributes: KeyValue) -> Span:
    span = Span(trace_id=b"\1" * 16, span_id=b"\2" * 8, name=name)
    span.attributes.extend(attributes)
    return span


def test_the_mark_must_be_true_and_on_the_span_itself() -> None:
    content = [
        _kv(A.GEN_AI_TOOL_CALL_ARGUMENTS, string_value='{"order": 1}'),
        _kv(A.GEN_AI_INPUT_MESSAGES, string_value="hi"),
        _kv(A.GEN_AI_OPERATION_NAME, string_value="chat"),
    ]
    marked = _span("marked", *content, _kv(A.EVALUATION_SAMPLED_CONTENT, bool_value=True))
    unmarked = _span("unmarked", *content)
    false = _span("false", *content, _kv(A.EVALUATION_SAMPLED_CONTENT, bool_value=False))
    wrong_type = _span("text", *content, _kv(A.EVALUATION_SAMPLED_CONTENT, string_value="true"))
    payload = _request(marked, unmarked, false, wrong_type)
    out = ExportTraceServiceRequest.FromString(request_without_content(payload))
    kept = {
        span.name: [kv.key for kv in span.attributes]
        for span in out.resource_spans[0].scope_spans[0].spans
    }
    assert kept["marked"] == [A.GEN_AI_OPERATION_NAME, A.EVALUATION_SAMPLED_CONTENT]
    for name in ("unmarked", "false", "text"):
        assert kept[name][:3] == [kv.key for kv in content]
    # nothing marked true: the very same bytes, no re-encoding
    untouched = _request(unmarked, false, wrong_type)
    assert request_without_content(untouched) is untouched
    held = unmarked.SerializeToString()
    assert without_content(held) is held
    stripped = Span.FromString(without_content(marked.SerializeToString()))
    assert [kv.key for kv in stripped.attributes] == kept["marked"]


def test_a_malformed_mark_is_not_a_mark() -> None:
    span = _span("bad", _kv(A.GEN_AI_INPUT_MESSAGES, string_value="hi"))
    encoded = bytearray(span.SerializeToString())
    # an attribute whose key is the mark's and whose value is cut short
    key = A.EVALUATION_SAMPLED_CONTENT.encode()
    kv = b"\x0a" + bytes([len(key)]) + key + b"\x12\x05\x08"
    encoded += b"\x4a" + bytes([len(kv)]) + kv  # field 9: attributes
    assert without_content(bytes(encoded)) == bytes(encoded)
