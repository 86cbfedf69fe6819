"""The collector judges sampled runs: the same judged figures as ``analyze``, the
judgments forwarded as ``evaluate {pipeline}`` spans, sampled content stripped."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmspans import _attributes as A
from llmspans.collector.config import CollectorSettings, Evaluation, FileExporter
from llmspans.collector.forwarding import FileWriter, Forwarder
from llmspans.collector.metrics import MetricsStore
from llmspans.collector.processor import Processor
from llmspans.collector.service import Collector

from . import scenario

Tracing = tuple[TracerProvider, InMemorySpanExporter]


async def test_the_collector_counts_the_judged_failures(tracing: Tracing, tmp_path: Path) -> None:
    provider, exporter = tracing
    scenario.record_runs(provider.get_tracer("t"))
    request = encode_spans(exporter.get_finished_spans())
    data = request.SerializeToString()

    metrics = MetricsStore()
    output = tmp_path / "forwarded.jsonl"
    writer = FileWriter(FileExporter(protocol="file", path=output), "file", metrics)
    clock = [100.0]
    settings = CollectorSettings(
        evaluation=Evaluation(evaluators=["tests.evaluation.judges:judge"], concurrency=2)
    )
    processor = Processor(settings, metrics, Forwarder([writer]), clock=lambda: clock[0])
    await writer.start()
    assert processor.evaluation is not None
    processor.accept(ExportTraceServiceRequest.FromString(data), data)
    clock[0] += 1000.0
    assert processor.sweep() == len(scenario.RUNS)
    assert processor.evaluation.runner.drain(10.0)
    assert processor.collect_evaluations() == len(scenario.RUNS)
    processor.drain()
    assert await writer.flush(5.0)
    await writer.close()

    store = metrics.store
    assert (
        store.counter(A.METRIC_JUDGED_FAILURES, stage="retrieval", reason="missed_relevant")
        == scenario.MISSED_RELEVANT
    )
    assert (
        store.counter(A.METRIC_JUDGED_FAILURES, stage="generation", reason="incorrect_answer")
        == scenario.INCORRECT_ANSWER
    )
    precision = store.aggregates.histogram(A.METRIC_CONTEXT_PRECISION, basis="judge")
    assert math.isclose(precision.sum / precision.count, scenario.JUDGED_PRECISION)
    recall = store.aggregates.histogram(A.METRIC_CONTEXT_RECALL, basis="judge")
    assert math.isclose(recall.sum / recall.count, scenario.JUDGED_RECALL)
    support = store.aggregates.histogram(A.METRIC_CITATION_SUPPORT)
    assert math.isclose(support.sum / support.count, scenario.CITATION_SUPPORT)

    text = output.read_text()
    forwarded = [
        span
        for line in text.splitlines()
        for resource in json.loads(line)["resourceSpans"]
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]
    evaluations = [span for span in forwarded if span["name"] == "evaluate support"]
    assert len(evaluations) == len(scenario.RUNS)
    roots = {span["spanId"] for span in forwarded if span["name"] == "invoke_workflow support"}
    for span in evaluations:
        (link,) = span["links"]
        assert link["spanId"] in roots
        keys = {attribute["key"] for attribute in span["attributes"]}
        assert {A.STAGE, A.EVALUATION_EVALUATOR, A.EVALUATION_VERDICT} <= keys
    # content of sampled runs is stripped by default; ids stay
    for key in (A.RETRIEVAL_DOCUMENTS_CONTENT, A.GEN_AI_OUTPUT_MESSAGES, A.GENERATION_CLAIMS):
        assert key not in text
    assert A.RETRIEVAL_DOCUMENT_IDS in text


async def test_a_hanging_judge_never_slows_ingestion(tracing: Tracing, tmp_path: Path) -> None:
    provider, exporter = tracing
    scenario.record_runs(provider.get_tracer("t"))
    data = encode_spans(exporter.get_finished_spans()).SerializeToString()
    metrics = MetricsStore()
    output = tmp_path / "forwarded.jsonl"
    writer = FileWriter(FileExporter(protocol="file", path=output), "file", metrics)
    clock = [100.0]
    settings = CollectorSettings(
        evaluation=Evaluation(
            evaluators=["tests.evaluation.judges:hangs"],
            concurrency=1,
            queue_size=2,
            timeout_s=0.2,
            forward_content=True,
        )
    )
    processor = Processor(settings, metrics, Forwarder([writer]), clock=lambda: clock[0])
    await writer.start()
    processor.accept(ExportTraceServiceRequest.FromString(data), data)
    clock[0] += 1000.0
    started = time.monotonic()
    assert processor.sweep() == len(scenario.RUNS)
    assert time.monotonic() - started < 1.0
    assert processor.evaluation is not None
    assert processor.evaluation.runner.drain(10.0)
    processor.collect_evaluations()
    processor.drain()
    assert await writer.flush(5.0)
    await writer.close()
    store = metrics.store
    dropped = store.counter(A.METRIC_EVALUATION_DROPPED, reason="queue_full")
    timed_out = store.counter(A.METRIC_EVALUATIONS, verdict="timeout")
    assert dropped >= len(scenario.RUNS) - 3
    assert dropped + timed_out == len(scenario.RUNS)
    # forward_content: true keeps the sampled content on the forwarded spans
    assert A.RETRIEVAL_DOCUMENTS_CONTENT in output.read_text()


async def test_the_evaluation_queue_depth_is_on_metrics(tracing: Tracing) -> None:
    provider, exporter = tracing
    scenario.record_runs(provider.get_tracer("t"))
    data = encode_spans(exporter.get_finished_spans()).SerializeToString()
    assert "evaluation_queue_runs{" not in Collector(CollectorSettings()).metrics.render()
    collector = Collector(
        CollectorSettings(
            assembly={"trace_idle_s": 0.05},
            evaluation=Evaluation(
                evaluators=["tests.evaluation.judges:hangs"],
                concurrency=1,
                queue_size=5,
                timeout_s=30,
            ),
        )
    )
    processor = collector.processor
    assert processor.evaluation is not None
    runner = processor.evaluation.runner
    try:
        processor.accept(ExportTraceServiceRequest.FromString(data), data)
        time.sleep(0.1)
        assert processor.sweep() == len(scenario.RUNS)  # 10 sampled runs offered
        deadline = time.monotonic() + 5.0
        while runner.depth()[1] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        queued, running = runner.depth()
        assert running == 1
        assert queued in {4, 5}  # the bound; one may have left before it filled
        text = collector.metrics.render()
        assert f'llmspans_collector_evaluation_queue_runs{{state="queued"}} {queued}' in text
        assert 'llmspans_collector_evaluation_queue_runs{state="running"} 1' in text
    finally:
        runner.close(0.1)
