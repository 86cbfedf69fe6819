"""The embedded mode judges sampled runs with the same runner and core: the same
judged figures as the collector and ``analyze``."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from llmspans import _attributes as A
from llmspans.collector.evaluation import otlp_span
from llmspans.embedded import EmbeddedProcessor, record_from_readable_span
from llmspans.evaluation import Judgment, Run
from llmspans.evaluation._spans import EvaluationSpan

from . import judges, scenario


def test_the_embedded_mode_counts_the_judged_failures() -> None:
    processor = EmbeddedProcessor(evaluators=[judges.judge, "tests.evaluation.judges:async_judge"])
    provider = TracerProvider()
    provider.add_span_processor(processor)
    try:
        scenario.record_runs(provider.get_tracer("t"))
        assert processor.evaluation is not None
        assert processor.evaluation.drain(10.0)
        assert processor.collect_evaluations() == 2 * len(scenario.RUNS)
    finally:
        provider.shutdown()
    store = processor.store
    for evaluator in ("tests.evaluation.judges:async_judge",):
        assert store.counter(A.METRIC_EVALUATIONS, evaluator=evaluator) == len(scenario.RUNS)
    assert (
        store.counter(A.METRIC_JUDGED_FAILURES, stage="retrieval", reason="missed_relevant")
        == 2 * scenario.MISSED_RELEVANT
    )
    precision = store.aggregates.histogram(A.METRIC_CONTEXT_PRECISION, basis="judge")
    assert math.isclose(precision.sum / precision.count, scenario.JUDGED_PRECISION)
    recall = store.aggregates.histogram(A.METRIC_CONTEXT_RECALL, basis="judge")
    assert math.isclose(recall.sum / recall.count, scenario.JUDGED_RECALL)
    support = store.aggregates.histogram(A.METRIC_CITATION_SUPPORT)
    assert math.isclose(support.sum / support.count, scenario.CITATION_SUPPORT)
    assert "llmspans_judged_failures_total" in processor.render()


def _explained(run: Run) -> Judgment:
    found = judges.judge(run)
    return Judgment(
        relevant_ids=found.relevant_ids,
        supported_citations=found.supported_citations,
        unsupported_citations=found.unsupported_citations,
        correct=found.correct,
        explanation=f"judged {len(run.documents)} documents",
        cost_usd=found.cost_usd,
    )


def test_the_embedded_mode_emits_an_evaluate_span_linked_to_each_run() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = EmbeddedProcessor(evaluators=[_explained, judges.broken], tracer_provider=provider)
    # the processor first: at shutdown it emits its last spans before the exporter stops
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        scenario.record_runs(provider.get_tracer("t"))
        assert processor.evaluation is not None
        assert processor.evaluation.drain(10.0)
        assert processor.collect_evaluations() == 2 * len(scenario.RUNS)
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    roots = {s.context.span_id: s for s in spans if s.name == "invoke_workflow support"}
    evaluations = [s for s in spans if s.name == "evaluate support"]
    assert len(roots) == len(scenario.RUNS)
    assert len(evaluations) == 2 * len(scenario.RUNS)
    # the evaluate spans are not runs: the processor skips the spans it emits itself
    assert processor.store.counter(A.METRIC_TASK_OUTCOMES) == len(scenario.RUNS)
    missed = 0
    for span in evaluations:
        assert span.parent is None
        assert span.instrumentation_scope is not None
        assert span.instrumentation_scope.name == "llmspans.evaluation"
        (link,) = span.links
        root = roots[link.context.span_id]
        assert link.context.trace_id == root.context.trace_id
        assert span.context.trace_id != root.context.trace_id
        attributes = dict(span.attributes or {})
        assert attributes[A.STAGE] == A.STAGE_EVALUATION
        assert attributes[A.PIPELINE] == "support"
        assert span.end_time is not None and span.start_time is not None
        assert span.end_time >= span.start_time
        if attributes[A.EVALUATION_EVALUATOR].endswith(":broken"):
            assert attributes[A.EVALUATION_VERDICT] == "error"
            assert span.status.status_code is StatusCode.ERROR
            assert "judge exploded" in (span.status.description or "")
            continue
        assert span.status.status_code is StatusCode.UNSET
        assert attributes[A.EVALUATION_EXPLANATION] == "judged 2 documents"
        assert attributes[A.EVALUATION_COST_USD] == 0.001
        if attributes.get(A.EVALUATION_FAILURE_REASON) == "missed_relevant":
            assert attributes[A.EVALUATION_FAILURE_STAGE] == "retrieval"
            assert attributes[A.EVALUATION_RELEVANT_IDS] == ()
            missed += 1
    assert missed == scenario.MISSED_RELEVANT


def test_the_collector_and_the_embedded_mode_build_the_same_evaluate_span() -> None:
    """One builder: the OTLP span the collector forwards has the name, attributes,
    link, times and status of the SDK span the embedded mode emits."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = EmbeddedProcessor(evaluators=[_explained, judges.broken], tracer_provider=provider)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert processor.evaluation is not None
    built: list[EvaluationSpan] = []
    emit = processor._emit

    def keep(span: EvaluationSpan) -> None:
        built.append(span)
        emit(span)

    processor._emit = keep  # type: ignore[method-assign]
    try:
        scenario.record_runs(provider.get_tracer("t"), scenario.RUNS[:2])
        assert processor.evaluation.drain(10.0)
        processor.collect_evaluations()
    finally:
        provider.shutdown()
    emitted = {
        (s.links[0].context.span_id, dict(s.attributes or {})[A.EVALUATION_EVALUATOR]): s
        for s in exporter.get_finished_spans()
        if s.name == "evaluate support"
    }
    assert len(built) == len(emitted) == 4
    for one in built:
        encoded = otlp_span(one)
        sdk = emitted[(int.from_bytes(one.link[1], "big"), one.attributes[A.EVALUATION_EVALUATOR])]
        assert encoded.name == sdk.name
        (link,) = encoded.links
        assert int.from_bytes(link.trace_id, "big") == sdk.links[0].context.trace_id
        assert int.from_bytes(link.span_id, "big") == sdk.links[0].context.span_id
        assert (encoded.start_time_unix_nano, encoded.end_time_unix_nano) == (
            sdk.start_time,
            sdk.end_time,
        )
        decoded = {kv.key: _python(MessageToDict(kv.value)) for kv in encoded.attributes}
        assert decoded == {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in dict(sdk.attributes or {}).items()
        }
        assert (encoded.status.code == encoded.status.STATUS_CODE_ERROR) == (
            sdk.status.status_code is StatusCode.ERROR
        )
        assert encoded.status.message == (sdk.status.description or "")


def _python(value: dict[str, Any]) -> object:
    """An OTLP AnyValue (as a dict) as the Python value the SDK holds."""
    if "arrayValue" in value:
        return [_python(item) for item in value["arrayValue"].get("values", [])]
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "doubleValue" in value:
        return value["doubleValue"]
    return None


def test_an_evaluate_span_read_back_by_another_engine_is_valid_and_no_run() -> None:
    # Embedded spans exported to a collector, or a collector's forwarded file read by
    # analyze: the evaluate spans come back in. Their stage is valid (no bad
    # attribute) and they change no run's numbers.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    processor = EmbeddedProcessor(evaluators=[_explained], tracer_provider=provider)
    provider.add_span_processor(processor)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        scenario.record_runs(provider.get_tracer("t"))
        assert processor.evaluation is not None
        assert processor.evaluation.drain(10.0)
        processor.collect_evaluations()
    finally:
        provider.shutdown()
    spans = exporter.get_finished_spans()
    assert any(s.name == "evaluate support" for s in spans)
    records = [record_from_readable_span(span) for span in spans]
    evaluations = [r for r in records if r.stage == A.STAGE_EVALUATION]
    assert len(evaluations) == len(scenario.RUNS)
    assert all(r.bad_attributes == 0 for r in evaluations)
    again = EmbeddedProcessor()
    try:
        for span in spans:
            again.on_end(span)
        again.force_flush()
        assert again.store.counter(A.METRIC_TASK_OUTCOMES) == len(scenario.RUNS)
    finally:
        again.shutdown()
