"""Properties over random runs: one root cause per failed run, and counters that add up."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from llmspans import _attributes as A
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import Aggregates, observations
from llmspans.core.model import Thresholds
from llmspans.core.records import SpanRecord

from .builders import pipeline_root, record, span_id

ALLOWED = {
    A.STAGE_RETRIEVAL: {"error", "empty", "missed_relevant", "low_relevance"},
    A.STAGE_CONTEXT_SELECTION: {"error", "empty", "dropped_relevant"},
    A.STAGE_GENERATION: {"error", "unsupported_citation", "refused", "invalid_output"},
    A.STAGE_ACTION: {"error", "verification_failed"},
    A.STAGE_UNATTRIBUTED: {"error", "task_incomplete"},
}

doc_ids = st.lists(st.sampled_from(["d1", "d2", "d3", "d4"]), max_size=4, unique=True)
maybe_ids = st.none() | doc_ids.map(tuple)
maybe_bool = st.none() | st.booleans()


@st.composite
def stage_fields(draw: st.DrawFn, stage: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"error": draw(st.integers(0, 9)) == 0}
    if stage == A.STAGE_RETRIEVAL:
        fields["document_ids"] = draw(maybe_ids)
        fields["relevant_ids"] = draw(maybe_ids)
        if fields["document_ids"] is not None and draw(st.booleans()):
            fields["scores"] = tuple(
                draw(st.floats(0, 1)) for _ in range(len(fields["document_ids"]))
            )
    elif stage == A.STAGE_CONTEXT_SELECTION:
        fields["input_ids"] = draw(maybe_ids)
        fields["selected_ids"] = draw(maybe_ids)
    elif stage == A.STAGE_GENERATION:
        fields["citations"] = draw(maybe_ids)
        fields["refused"] = draw(maybe_bool)
        fields["output_valid"] = draw(maybe_bool)
        fields["confidence"] = draw(st.none() | st.floats(0, 1))
        fields["cost_usd"] = draw(st.none() | st.floats(0, 1))
    else:
        fields["verified"] = draw(maybe_bool)
    return fields


@st.composite
def traces(draw: st.DrawFn) -> list[SpanRecord]:
    """Runs with stage spans under the root, under other stage spans, orphaned (their
    parent never arrived) or in a nested pipeline."""
    spans: list[SpanRecord] = []
    for run_index in range(draw(st.integers(1, 4))):
        parent_of_root = b""
        if spans and draw(st.integers(0, 4)) == 0:
            parent_of_root = draw(st.sampled_from(spans)).span_id  # a nested pipeline
        root = pipeline_root(
            draw(st.sampled_from(["a", "b", "c"])),
            start=run_index * 10_000,
            parent_span_id=parent_of_root,
            error=draw(st.integers(0, 5)) == 0,
            task_completed=draw(maybe_bool),
            task_correct=draw(maybe_bool),
        )
        spans.append(root)
        under = [root]
        for _ in range(draw(st.integers(0, 7))):
            stage = draw(st.sampled_from(A.PIPELINE_ORDER))
            placement = draw(st.integers(0, 9))
            fields = draw(stage_fields(stage))
            start = run_index * 10_000 + draw(st.integers(0, 5000))
            if placement == 0:
                span = record(stage, parent_span_id=span_id(), start=start, **fields)
            else:
                parent = draw(st.sampled_from(under)) if placement == 1 else root
                span = record(stage, parent=parent, start=start, **fields)
            spans.append(span)
            under.append(span)
    return spans


def _seen_twice(span: SpanRecord, spans: list[SpanRecord]) -> bool:
    """The rule for one call seen twice, said plainly (docs/conventions.md): the
    nearest ancestor with a stage has the same stage and overlaps the span in time."""
    by_id = {other.span_id: other for other in spans}
    parent = by_id.get(span.parent_span_id)
    while parent is not None and parent.stage is None:
        parent = by_id.get(parent.parent_span_id)
    return (
        parent is not None
        and parent.stage == span.stage
        and span.start_ns <= parent.end_ns
        and parent.start_ns <= span.end_ns
    )


thresholds = st.builds(
    Thresholds,
    min_score=st.none() | st.floats(0, 1),
    min_citation_precision=st.floats(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(traces(), thresholds, st.randoms(use_true_random=False))
def test_one_root_cause_per_failed_run_and_counters_add_up(
    spans: list[SpanRecord], limits: Thresholds, rng: random.Random
) -> None:
    result = evaluate_trace(spans, limits)
    failed = 0
    for run, verdict in result.runs:
        if verdict.outcome == A.OUTCOME_FAILURE:
            failed += 1
            assert verdict.failure_stage in ALLOWED
            assert verdict.failure_reason in ALLOWED[verdict.failure_stage]
            assert verdict.evidence is not None
        else:
            assert verdict.failure_stage is None and verdict.failure_reason is None
            assert not run.root.error and run.root.task_completed is not False
        if verdict.outcome == A.OUTCOME_SUCCESS:
            actions = run.stages.get(A.STAGE_ACTION, [])
            assert run.root.task_completed is True or (
                actions and all(span.verified is True for span in actions)
            )

    aggregates = Aggregates()
    aggregates.apply(observations(result))
    assert aggregates.counter(A.METRIC_STAGE_FAILURES) == failed
    assert aggregates.counter(A.METRIC_TASK_OUTCOMES) == len(result.runs)
    assert aggregates.counter(A.METRIC_TASK_OUTCOMES, outcome="failure") == failed
    stage_spans = sum(
        1 for span in spans if span.stage in A.PIPELINE_ORDER and not _seen_twice(span, spans)
    )
    assert aggregates.counter(A.METRIC_STAGE_CALLS) == stage_spans

    shuffled = list(spans)
    rng.shuffle(shuffled)
    again = evaluate_trace(shuffled, limits)
    assert [verdict for _, verdict in again.runs] == [verdict for _, verdict in result.runs]
