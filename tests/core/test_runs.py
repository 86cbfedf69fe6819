"""Run assembly over messy traces."""

from __future__ import annotations

import random

from llmspans import _attributes as A
from llmspans.core.attribution import attribute
from llmspans.core.metrics import observations
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.runs import (
    assemble,
    cited_ids,
    pipeline_name,
    retrieved_ids,
    selected_context,
    selected_context_set,
)

from .builders import pipeline_root, record, span_id

OTHER_TRACE = bytes.fromhex("22" * 16)


def test_several_spans_per_stage_in_start_order_whatever_the_arrival_order() -> None:
    root = pipeline_root("rag")
    first = record(A.STAGE_RETRIEVAL, parent=root, start=10)
    second = record(A.STAGE_RETRIEVAL, parent=root, start=20)
    generation = record(A.STAGE_GENERATION, parent=root, start=30)
    helper = record(None, parent=generation, start=31, cost_usd=0.5)  # an HTTP span, say
    spans = [helper, second, generation, root, first]
    random.Random(4).shuffle(spans)
    (run,), standalone, feedback = assemble(spans)
    assert run.root is root and run.pipeline == "rag"
    assert run.stages[A.STAGE_RETRIEVAL] == [first, second]
    assert run.stages[A.STAGE_GENERATION] == [generation]
    assert helper in run.spans and helper not in run.stages.get(A.STAGE_GENERATION, [])
    assert len(run.spans) == 5
    assert standalone == [] and feedback == []


def test_nested_pipeline_spans_belong_to_the_inner_run() -> None:
    outer = pipeline_root("agent")
    outer_generation = record(A.STAGE_GENERATION, parent=outer, start=1)
    action = record(A.STAGE_ACTION, parent=outer, start=2)
    inner = pipeline_root("rag", parent_span_id=action.span_id, start=3)
    inner_retrieval = record(A.STAGE_RETRIEVAL, parent=inner, start=4)
    deep = record(None, parent=inner_retrieval, start=5)
    deep_generation = record(A.STAGE_GENERATION, parent=deep, start=6)
    runs, standalone, _ = assemble(
        [deep_generation, deep, inner_retrieval, inner, action, outer_generation, outer]
    )
    by_name = {run.pipeline: run for run in runs}
    assert set(by_name) == {"agent", "rag"}
    assert by_name["agent"].stages == {
        A.STAGE_GENERATION: [outer_generation],
        A.STAGE_ACTION: [action],
    }
    assert by_name["rag"].stages == {
        A.STAGE_RETRIEVAL: [inner_retrieval],
        A.STAGE_GENERATION: [deep_generation],
    }
    assert inner not in by_name["agent"].spans
    assert standalone == []


def test_orphan_joins_the_only_run_of_its_trace() -> None:
    root = pipeline_root("rag")
    orphan = record(A.STAGE_GENERATION, parent_span_id=span_id())  # its parent never arrived
    orphan_child = record(A.STAGE_ACTION, parent=orphan)
    (run,), standalone, _ = assemble([root, orphan, orphan_child])
    assert run.stages == {A.STAGE_GENERATION: [orphan], A.STAGE_ACTION: [orphan_child]}
    assert standalone == []


def test_orphan_with_two_runs_in_its_trace_is_standalone() -> None:
    first = pipeline_root("a")
    second = pipeline_root("b", start=5)
    orphan = record(A.STAGE_GENERATION, parent_span_id=span_id())
    orphan_helper = record(None, parent_span_id=span_id())
    runs, standalone, _ = assemble([first, second, orphan, orphan_helper])
    assert [run.pipeline for run in runs] == ["a", "b"]
    assert all(run.stages == {} for run in runs)
    assert standalone == [orphan]


def test_orphan_in_another_trace_is_not_guessed_into_a_run() -> None:
    root = pipeline_root("rag")
    stray = record(A.STAGE_RETRIEVAL, trace_id=OTHER_TRACE, parent_span_id=root.span_id)
    (run,), standalone, _ = assemble([root, stray])
    assert run.stages == {}
    assert standalone == [stray]


def test_stage_spans_outside_any_pipeline_are_standalone() -> None:
    server = record(None)  # an HTTP server span as the root
    retrieval = record(A.STAGE_RETRIEVAL, parent=server)
    generation = record(A.STAGE_GENERATION)
    runs, standalone, _ = assemble([server, retrieval, generation])
    assert runs == []
    assert standalone == sorted([retrieval, generation], key=lambda s: (s.start_ns, s.span_id))


def test_pipeline_under_a_non_pipeline_root() -> None:
    server = record(None)
    root = pipeline_root("rag", parent_span_id=server.span_id)
    retrieval = record(A.STAGE_RETRIEVAL, parent=root)
    (run,), standalone, _ = assemble([server, root, retrieval])
    assert run.stages == {A.STAGE_RETRIEVAL: [retrieval]}
    assert server not in run.spans
    assert standalone == []


def test_root_with_no_stage_spans_is_a_run() -> None:
    root = pipeline_root("empty")
    (run,), _, _ = assemble([root])
    assert run.stages == {} and run.spans == [root]


def test_feedback_is_never_part_of_a_run() -> None:
    root = pipeline_root("rag")
    inside = record(A.STAGE_FEEDBACK, parent=root, feedback_kind="accept")
    own_trace = record(A.STAGE_FEEDBACK, trace_id=OTHER_TRACE, feedback_kind="edit")
    (run,), standalone, feedback = assemble([root, inside, own_trace])
    assert inside not in run.spans
    assert feedback == [inside, own_trace]
    assert standalone == []


def test_duplicates_count_once_and_cycles_terminate() -> None:
    root = pipeline_root("rag")
    retrieval = record(A.STAGE_RETRIEVAL, parent=root)
    a_id, b_id = span_id(), span_id()
    cycle_a = record(A.STAGE_GENERATION, span_id=a_id, parent_span_id=b_id)
    cycle_b = record(None, span_id=b_id, parent_span_id=a_id)
    (run,), standalone, _ = assemble([root, retrieval, retrieval, cycle_a, cycle_b])
    assert run.stages[A.STAGE_RETRIEVAL] == [retrieval]
    # the cycle never reaches a pipeline: with one run in the trace it joins that run
    assert run.stages[A.STAGE_GENERATION] == [cycle_a]
    assert standalone == []


def test_pipeline_name_fallbacks() -> None:
    assert pipeline_name(record(A.STAGE_PIPELINE, pipeline="x", name="whatever")) == "x"
    assert pipeline_name(record(A.STAGE_PIPELINE, name="invoke_workflow support")) == "support"
    assert pipeline_name(record(A.STAGE_PIPELINE, name="invoke_workflow")) == "unknown"


def test_records_of_several_traces() -> None:
    first = pipeline_root("a")
    second = pipeline_root("b", trace_id=OTHER_TRACE)
    r1 = record(A.STAGE_RETRIEVAL, parent=first)
    r2 = record(A.STAGE_RETRIEVAL, parent=second, trace_id=OTHER_TRACE)
    runs, _, _ = assemble([r2, r1, second, first])
    assert {run.pipeline: run.stages[A.STAGE_RETRIEVAL] for run in runs} == {
        "a": [r1],
        "b": [r2],
    }


def test_run_facts_are_computed_once_so_rules_stay_linear_in_the_spans() -> None:
    root = pipeline_root("rag")
    retrievals = [
        record(A.STAGE_RETRIEVAL, parent=root, start=i, document_ids=(f"d{i}", "shared"))
        for i in range(300)
    ]
    selections = [
        record(A.STAGE_CONTEXT_SELECTION, parent=root, start=300 + i, selected_ids=(f"d{i}",))
        for i in range(300)
    ]
    generation = record(A.STAGE_GENERATION, parent=root, start=700, citations=("d1", "d2"))
    (run,), _, _ = assemble([root, *retrievals, *selections, generation])

    verdict = attribute(run, Thresholds())

    # The first selection kept d0 and dropped both documents the answer cites.
    assert (verdict.outcome, verdict.failure_stage, verdict.failure_reason) == (
        A.OUTCOME_FAILURE,
        A.STAGE_CONTEXT_SELECTION,
        A.REASON_DROPPED_RELEVANT,
    )
    # Every rule and metric asked for these per stage span; each was built once, and
    # later callers get that same object back rather than a fresh union over the run.
    assert set(run.facts) == {"retrieved_ids", "retrieved_id_set", "relevant_ids", "cited_ids"}
    assert retrieved_ids(run) is run.facts["retrieved_ids"]
    assert selected_context(run) is selected_context(run)
    assert selected_context(run) == tuple(f"d{i}" for i in range(300))
    assert cited_ids(run) == ("d1", "d2")
    assert len(retrieved_ids(run)) == 301  # d0..d299 and "shared", first-seen order
    assert retrieved_ids(run)[:2] == ("d0", "shared")


def test_citations_are_checked_against_one_set_of_the_shown_context() -> None:
    """Many generations with citations and a large shown context: the context is made
    a set once per run, not once per generation (work linear in ids + citations)."""
    root = pipeline_root("rag")
    ids = tuple(f"doc-{i}" for i in range(20_000))
    retrieval = record(A.STAGE_RETRIEVAL, parent=root, start=1, document_ids=ids)
    generations = [
        record(A.STAGE_GENERATION, parent=root, start=10 + i, citations=(f"doc-{i}", "gone"))
        for i in range(2_000)
    ]
    (run,), _, _ = assemble([root, retrieval, *generations])
    shown = selected_context_set(run)
    assert shown is selected_context_set(run) and shown is not None and len(shown) == 20_000
    verdict = attribute(run, Thresholds())
    assert (verdict.failure_stage, verdict.failure_reason) == (
        A.STAGE_GENERATION,
        A.REASON_UNSUPPORTED_CITATION,
    )
    assert run.facts["selected_context_set"] is shown
    values = [
        o.value
        for o in observations(TraceResult([(run, verdict)]))
        if o.instrument == A.METRIC_CITATION_PRECISION
    ]
    assert values == [0.5] * 2_000
