"""One call seen by two instrumentations counts once (docs/conventions.md, "Other
conventions", precedence): a stage span inside a span of the same stage, with no
other stage between and overlapping in time, is folded into the outer span."""

# ruff: noqa: SIM117  (nested ``with`` blocks draw the span tree)

from __future__ import annotations

import copy
import random
import time
from pathlib import Path

import pytest

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import Aggregates, accumulate
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.runs import assemble

from .builders import pipeline_root, record, span_id


def _calls(result: TraceResult, stage: str = A.STAGE_GENERATION) -> float:
    aggregates = Aggregates()
    accumulate(result, aggregates)
    return sum(
        value
        for (name, labels), value in aggregates.counters.items()
        if name == A.METRIC_STAGE_CALLS and ("stage", stage) in labels
    )


def _cost(result: TraceResult) -> float:
    aggregates = Aggregates()
    accumulate(result, aggregates)
    return sum(
        value for (name, _), value in aggregates.counters.items() if name == A.METRIC_TASK_COST
    )


def test_a_peer_span_inside_llmspans_own_is_one_call_with_the_facts_of_both() -> None:
    root = pipeline_root("support")
    own = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=50, cost_usd=0.25)
    peer = record(
        A.STAGE_GENERATION, parent=own, start=11, duration_ms=48, refused=True, operation="chat"
    )
    records = [root, own, peer]
    before = copy.deepcopy(records)
    result = evaluate_trace(records, Thresholds())
    ((run, verdict),) = result.runs
    assert (verdict.failure_stage, verdict.failure_reason) == (A.STAGE_GENERATION, A.REASON_REFUSED)
    assert verdict.evidence is not None and verdict.evidence.span_id == own.span_id
    (generation,) = run.stages[A.STAGE_GENERATION]
    assert generation.span_id == own.span_id and generation.refused is True
    assert peer not in run.spans
    assert _calls(result) == 1
    assert _cost(result) == 0.25
    assert records == before  # the input records are not changed


def test_llmspans_span_inside_a_peer_span_gives_the_outer_its_cost_once() -> None:
    root = pipeline_root("support")
    peer = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=50, operation="chat")
    own = record(A.STAGE_GENERATION, parent=peer, start=11, duration_ms=48, cost_usd=0.25)
    result = evaluate_trace([own, peer, root], Thresholds())
    ((run, _),) = result.runs
    (generation,) = run.stages[A.STAGE_GENERATION]
    assert generation.span_id == peer.span_id and generation.cost_usd == 0.25
    assert _calls(result) == 1 and _cost(result) == 0.25


def test_an_error_that_reaches_the_outer_span_is_one_generation_error() -> None:
    root = pipeline_root("support", error=True)
    outer = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=50, error=True)
    middle = record(None, parent=outer, start=11, duration_ms=40)  # a span of no stage
    inner = record(
        A.STAGE_GENERATION,
        parent=middle,
        start=12,
        duration_ms=30,
        error=True,
        error_type="InternalServerError",
    )
    result = evaluate_trace([root, outer, middle, inner], Thresholds())
    ((run, verdict),) = result.runs
    assert (verdict.failure_stage, verdict.failure_reason) == (A.STAGE_GENERATION, A.REASON_ERROR)
    assert verdict.evidence is not None and verdict.evidence.detail == "InternalServerError"
    assert middle in run.spans and inner not in run.spans
    aggregates = Aggregates()
    accumulate(result, aggregates)
    assert aggregates.counters[
        (
            A.METRIC_STAGE_CALLS,
            (("pipeline", "support"), ("stage", A.STAGE_GENERATION), ("status", "error")),
        )
    ] == 1
    assert _calls(result) == 1


def test_an_error_handled_inside_the_outer_span_does_not_fail_the_stage() -> None:
    root = pipeline_root("support", task_completed=True)
    outer = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=50)
    failed = record(A.STAGE_GENERATION, parent=outer, start=11, duration_ms=5, error=True)
    retried = record(A.STAGE_GENERATION, parent=outer, start=20, duration_ms=5)
    result = evaluate_trace([root, outer, failed, retried], Thresholds())
    ((_, verdict),) = result.runs
    assert verdict.outcome == A.OUTCOME_SUCCESS
    assert _calls(result) == 1


def test_three_stacked_instrumentations_are_one_call() -> None:
    root = pipeline_root("support")
    first = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=50)
    second = record(A.STAGE_GENERATION, parent=first, start=11, duration_ms=48)
    third = record(A.STAGE_GENERATION, parent=second, start=12, duration_ms=46, refused=True)
    spans = [root, first, second, third]
    random.Random(3).shuffle(spans)
    result = evaluate_trace(spans, Thresholds())
    ((run, verdict),) = result.runs
    assert [span.span_id for span in run.stages[A.STAGE_GENERATION]] == [first.span_id]
    assert verdict.failure_reason == A.REASON_REFUSED
    assert _calls(result) == 1


def test_stacked_retrievals_keep_the_outer_result_and_take_an_empty_one_it_lacks() -> None:
    root = pipeline_root("rag")
    own = record(A.STAGE_RETRIEVAL, parent=root, start=10, duration_ms=50)
    peer = record(A.STAGE_RETRIEVAL, parent=own, start=11, duration_ms=40, document_ids=())
    result = evaluate_trace([root, own, peer], Thresholds())
    ((_, verdict),) = result.runs
    assert (verdict.failure_stage, verdict.failure_reason) == (A.STAGE_RETRIEVAL, A.REASON_EMPTY)
    assert _calls(result, A.STAGE_RETRIEVAL) == 1


def test_what_is_not_the_same_call_still_counts_apart() -> None:
    root = pipeline_root("agent", duration_ms=5000)
    # a generation under an action under a generation: another stage between
    planner = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=500)
    tool = record(A.STAGE_ACTION, parent=planner, start=20, duration_ms=100)
    nested = record(A.STAGE_GENERATION, parent=tool, start=30, duration_ms=50)
    # a child that starts after its parent ended (fire and forget): not the same call
    late = record(A.STAGE_GENERATION, parent=planner, start=600, duration_ms=50)
    # siblings under the run root
    sibling = record(A.STAGE_GENERATION, parent=root, start=700, duration_ms=50)
    result = evaluate_trace([root, planner, tool, nested, late, sibling], Thresholds())
    assert _calls(result) == 4
    assert _calls(result, A.STAGE_ACTION) == 1


def test_stacked_spans_outside_any_run_are_one_standalone_call() -> None:
    outer = record(A.STAGE_GENERATION, start=10, duration_ms=50)
    inner = record(A.STAGE_GENERATION, parent=outer, start=11, duration_ms=40, cost_usd=0.1)
    runs, standalone, _ = assemble([inner, outer])
    assert runs == []
    (only,) = standalone
    assert only.span_id == outer.span_id and only.cost_usd == 0.1


def test_a_nested_pipeline_between_is_a_run_of_its_own() -> None:
    root = pipeline_root("outer", duration_ms=5000)
    generation = record(A.STAGE_GENERATION, parent=root, start=10, duration_ms=500)
    inner_root = record(
        A.STAGE_PIPELINE, parent=generation, pipeline="inner", start=20, duration_ms=100
    )
    inner_generation = record(A.STAGE_GENERATION, parent=inner_root, start=30, duration_ms=50)
    runs, _, _ = assemble([root, generation, inner_root, inner_generation])
    assert [len(run.stages[A.STAGE_GENERATION]) for run in runs] == [1, 1]


def test_a_parent_cycle_of_stacked_spans_ends_and_folds_nothing() -> None:
    root = pipeline_root("rag")
    a_id, b_id = span_id(), span_id()
    a = record(A.STAGE_GENERATION, span_id=a_id, parent_span_id=b_id, start=10)
    b = record(A.STAGE_GENERATION, span_id=b_id, parent_span_id=a_id, start=11)
    (run,), _, _ = assemble([root, a, b])
    assert run.stages[A.STAGE_GENERATION] == [a, b]


def test_a_deep_chain_of_stacked_spans_is_folded_in_linear_time() -> None:
    """A hostile trace of many nested spans of one stage: one walk per span, each
    stopping at its parent, and one fold of all of them into the top one."""
    root = pipeline_root("deep", duration_ms=10_000_000)
    spans = [root]
    parent = root
    for index in range(20_000):
        parent = record(
            A.STAGE_GENERATION, parent=parent, start=index, duration_ms=10_000_000 - index
        )
        spans.append(parent)
    started = time.perf_counter()
    result = evaluate_trace(spans, Thresholds())
    # about half a second; a walk per span up the whole chain takes minutes
    assert time.perf_counter() - started < 20
    assert _calls(result) == 1


def test_the_embedded_mode_and_analyze_count_a_stacked_call_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same SDK spans through the embedded processor and through ``llmspans
    analyze`` (OTLP JSON): llmspans' generation span with a peer's chat span inside."""
    from .test_embedded import Harness, _analyze_json, _total, write_otlp_json_lines

    harness = Harness()
    tracer = harness.tracer
    with tracer.start_as_current_span(
        "invoke_workflow support", attributes={A.STAGE: A.STAGE_PIPELINE, A.PIPELINE: "support"}
    ):
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            attributes={A.STAGE: A.STAGE_GENERATION, A.PIPELINE: "support", A.COST_USD: 0.25},
        ):
            with tracer.start_as_current_span(
                "openai.chat",
                attributes={
                    A.GEN_AI_OPERATION_NAME: "chat",
                    A.GEN_AI_RESPONSE_FINISH_REASONS: ("content_filter",),
                },
            ):
                pass
    metrics = harness.metrics()
    assert _total(metrics[A.METRIC_STAGE_CALLS], pipeline="support", stage="generation") == 1
    assert _total(metrics[A.METRIC_TASK_COST], pipeline="support") == 0.25
    assert _total(
        metrics[A.METRIC_STAGE_FAILURES], pipeline="support", stage="generation", reason="refused"
    ) == 1
    path = tmp_path / "traces.jsonl"
    write_otlp_json_lines(harness.exporter.get_finished_spans(), path, per_line=2)
    report = _analyze_json(path, capsys)
    pipeline = report["pipelines"]["support"]
    assert pipeline["stages"]["generation"]["calls"] == 1
    assert pipeline["stages"]["generation"]["failures_by_reason"] == {"refused": 1}
    assert pipeline["cost_usd"] == 0.25
