"""End to end over loopback: SDK exporters -> collector -> /metrics and a real OTLP sink."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from collector_support import (
    RunningCollector,
    Sender,
    Sink,
    attributes,
    emit_run,
    grpc_sender,
    http_sender,
    wait_until,
)
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)

import llmspans.core.engine
from llmspans import _attributes as A


def _send_three_runs(sender: Sender) -> dict[str, bytes]:
    try:
        return {
            "success": emit_run(sender.tracer, cost=0.25, confidence=0.85),
            "retrieval_error": emit_run(sender.tracer, retrieval_error=True, cost=0.5),
            "unverified_action": emit_run(sender.tracer, verified=False, confidence=0.95),
        }
    finally:
        sender.close()


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_runs_become_exact_metrics_and_enriched_traces(
    protocol: str, start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    sender = (
        http_sender(collector.http_url)
        if protocol == "http"
        else grpc_sender(collector.grpc_endpoint)
    )
    traces = _send_three_runs(sender)

    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 3, what="three outcomes")
    m = collector.metric
    assert m("llmspans_task_outcomes_total", pipeline="rag", outcome="success") == 1
    assert m("llmspans_task_outcomes_total", pipeline="rag", outcome="failure") == 2
    assert m("llmspans_stage_failures_total") == 2
    assert m("llmspans_stage_failures_total", stage="retrieval", reason="error") == 1
    assert m("llmspans_stage_failures_total", stage="action", reason="verification_failed") == 1
    assert m("llmspans_stage_calls_total", stage="retrieval") == 3
    assert m("llmspans_stage_calls_total", stage="retrieval", status="error") == 1
    assert m("llmspans_stage_calls_total", stage="action", status="ok") == 3
    assert m("llmspans_task_cost_usd_total", outcome="success") == pytest.approx(0.25)
    assert m("llmspans_task_cost_usd_total", outcome="failure") == pytest.approx(0.5)
    assert m("llmspans_generation_citation_precision_count", pipeline="rag") == 3
    assert m("llmspans_generation_citation_precision_sum", pipeline="rag") == 3.0
    assert m("llmspans_calibration_runs_total", bin="8", correct="true") == 1
    assert m("llmspans_calibration_runs_total", bin="9", correct="false") == 1
    assert m("llmspans_calibration_confidence_total", bin="9") == pytest.approx(0.95)
    # ECE over the window: (|1 - 0.85| + |0 - 0.95|) / 2
    assert m("llmspans_calibration_ece", pipeline="rag") == pytest.approx(0.55)
    assert m("llmspans_task_duration_seconds_count", outcome="failure") == 2
    assert m("llmspans_collector_spans_received_total") == 15
    assert m("llmspans_collector_traces_inflight") == 0
    assert m("llmspans_collector_late_spans_total") == 0

    # Every span reaches the sink once; each root carries its verdict.
    wait_until(lambda: len(sink.spans()) == 15, what="15 forwarded spans")
    roots = {span.trace_id: attributes(span) for span in sink.spans() if not span.parent_span_id}
    assert set(roots) == set(traces.values())
    assert roots[traces["success"]][A.OUTCOME] == "success"
    assert A.FAILURE_STAGE not in roots[traces["success"]]
    assert roots[traces["retrieval_error"]][A.FAILURE_STAGE] == "retrieval"
    assert roots[traces["retrieval_error"]][A.FAILURE_REASON] == "error"
    assert roots[traces["unverified_action"]][A.OUTCOME] == "failure"
    assert roots[traces["unverified_action"]][A.FAILURE_REASON] == "verification_failed"
    children = [span for span in sink.spans() if span.parent_span_id]
    assert all(A.OUTCOME not in attributes(span) for span in children)
    wait_until(
        lambda: collector.metric("llmspans_collector_spans_forwarded_total") == 15,
        what="forwarded counter",
    )


def test_openmetrics_exemplars_carry_the_trace_id(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector()
    sender = http_sender(collector.http_url)
    trace_id = emit_run(sender.tracer, retrieval_error=True)
    sender.close()
    wait_until(lambda: collector.metric("llmspans_stage_failures_total") == 1)

    text = collector.scrape(openmetrics=True)
    assert text.rstrip().endswith("# EOF")
    families = {family.name: family for family in openmetrics_families(text)}
    failures = families["llmspans_stage_failures"]
    (sample,) = [s for s in failures.samples if s.name == "llmspans_stage_failures_total"]
    assert sample.labels == {
        "pipeline": "rag",
        "segment": "none",
        "source": "production",
        "stage": "retrieval",
        "reason": "error",
    }
    assert sample.exemplar is not None
    assert sample.exemplar.labels == {"trace_id": trace_id.hex()}
    durations = families["llmspans_task_duration_seconds"]
    exemplars = [s.exemplar for s in durations.samples if s.exemplar is not None]
    assert [e.labels["trace_id"] for e in exemplars] == [trace_id.hex()]


def test_pipeline_label_is_bounded(start_collector: Callable[..., RunningCollector]) -> None:
    collector = start_collector(metrics={"max_pipelines": 2})
    sender = http_sender(collector.http_url)
    for name in ("a", "b", "c", "d"):
        emit_run(sender.tracer, pipeline=name)
    sender.close()
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 4)
    assert collector.metric("llmspans_task_outcomes_total", pipeline="a") == 1
    assert collector.metric("llmspans_task_outcomes_total", pipeline="b") == 1
    assert collector.metric("llmspans_task_outcomes_total", pipeline="other") == 2
    assert collector.metric("llmspans_task_outcomes_total", pipeline="c") == 0


def test_late_span_is_forwarded_and_counted_not_reattributed(
    start_collector: Callable[..., RunningCollector], sink: Sink
) -> None:
    collector = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    sender = http_sender(collector.http_url)
    emit_run(sender.tracer, pipeline="late")
    wait_until(lambda: collector.metric("llmspans_task_outcomes_total") == 1)
    wait_until(lambda: len(sink.spans()) == 5)
    root = next(span for span in sink.spans() if not span.parent_span_id)

    # A retrieval that fails, sent after its trace was finalised: forwarded as it
    # is, counted as late, and the run's verdict and metrics do not change.
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, StatusCode, TraceFlags

    parent = SpanContext(
        int.from_bytes(root.trace_id, "big"),
        int.from_bytes(root.span_id, "big"),
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    with sender.tracer.start_as_current_span(
        "retrieval late", context=context, attributes={A.STAGE: "retrieval", A.PIPELINE: "late"}
    ) as late:
        late.set_status(StatusCode.ERROR)
    sender.close()

    wait_until(lambda: collector.metric("llmspans_collector_late_spans_total") == 1)
    wait_until(lambda: len(sink.spans()) == 6, what="the late span forwarded")
    forwarded = sink.spans()[-1]
    assert forwarded.name == "retrieval late"
    assert forwarded.trace_id == root.trace_id
    assert A.OUTCOME not in attributes(forwarded)
    assert collector.metric("llmspans_task_outcomes_total") == 1
    assert collector.metric("llmspans_stage_failures_total") == 0
    assert collector.metric("llmspans_stage_calls_total", stage="retrieval") == 1


def test_trace_without_root_is_finalised_by_timeout(
    start_collector: Callable[..., RunningCollector],
) -> None:
    collector = start_collector(assembly={"trace_idle_s": 0.1, "trace_timeout_s": 0.6})
    clock = collector.freeze_clock()  # finalisation happens when the test moves the clock
    sender = http_sender(collector.http_url)
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(1))
    context = trace.set_span_in_context(NonRecordingSpan(remote))
    with sender.tracer.start_as_current_span(
        "chat gpt-4o", context=context, attributes={A.STAGE: "generation"}
    ):
        pass
    sender.close()
    assert collector.metric("llmspans_collector_traces_inflight") == 1
    # Past the idle time but not the timeout: a trace without its root stays.
    clock.advance(0.3)
    collector.sweep()
    assert collector.metric("llmspans_collector_traces_inflight") == 1
    assert collector.metric("llmspans_collector_traces_evicted_total") == 0
    clock.advance(0.4)
    wait_until(lambda: collector.metric("llmspans_collector_traces_evicted_total") == 1)
    assert collector.metric("llmspans_collector_traces_inflight") == 0
    # A stage span outside any pipeline counts in the stage metrics only.
    assert collector.metric("llmspans_stage_calls_total", stage="generation") == 1
    assert collector.metric("llmspans_task_outcomes_total") == 0


def test_health_and_readiness(start_collector: Callable[..., RunningCollector]) -> None:
    import urllib.error
    import urllib.request

    collector = start_collector(assembly={"max_inflight_spans": 2})
    clock = collector.freeze_clock()  # the trace stays in flight until the clock moves
    with urllib.request.urlopen(collector.metrics_url + "/healthz") as response:
        assert response.status == 200
    with urllib.request.urlopen(collector.metrics_url + "/readyz") as response:
        assert response.status == 200
    sender = http_sender(collector.http_url)
    with sender.tracer.start_as_current_span("a"), sender.tracer.start_as_current_span("b"):
        pass
    sender.close()
    # Two spans in flight with a bound of two: not ready until the trace is final.
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(collector.metrics_url + "/readyz")
    assert raised.value.code == 503
    clock.advance(1.0)  # past trace_idle_s: the trace is final at the next sweep
    wait_until(lambda: collector.metric("llmspans_collector_spans_inflight") == 0)
    with urllib.request.urlopen(collector.metrics_url + "/readyz") as response:
        assert response.status == 200


def test_a_fault_in_evaluation_loses_no_span(
    start_collector: Callable[..., RunningCollector],
    sink: Sink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("evaluation bug")

    monkeypatch.setattr(llmspans.core.engine, "evaluate_trace", broken)
    running = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    sender = http_sender(running.http_url)
    emit_run(sender.tracer)
    sender.close()
    wait_until(
        lambda: running.metric("llmspans_collector_internal_errors_total", kind="evaluate") == 1
    )
    # The run's spans all go on (the root without a verdict); the collector serves on.
    wait_until(lambda: len(sink.spans()) == 5)
    assert all(A.OUTCOME not in attributes(span) for span in sink.spans())
    assert running.metric("llmspans_task_outcomes_total") == 0


def test_traces_without_stage_spans_pass_through_unevaluated(
    start_collector: Callable[..., RunningCollector],
    sink: Sink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    evaluated: list[int] = []
    original = llmspans.core.engine.evaluate_trace

    def counting(records: Any, thresholds: Any) -> Any:
        evaluated.append(len(records))
        return original(records, thresholds)

    monkeypatch.setattr(llmspans.core.engine, "evaluate_trace", counting)
    running = start_collector(exporters=[{"protocol": "http", "endpoint": sink.url}])
    sender = http_sender(running.http_url)
    with (
        sender.tracer.start_as_current_span("GET /health"),
        sender.tracer.start_as_current_span("SELECT"),
    ):
        pass
    emit_run(sender.tracer)
    sender.close()
    wait_until(lambda: running.metric("llmspans_collector_traces_finalized_total") == 2)
    assert evaluated == [5]
    wait_until(lambda: len(sink.spans()) == 7)
    assert running.metric("llmspans_task_outcomes_total") == 1
