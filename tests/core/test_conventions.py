"""Spans of the other conventions (gen_ai.*, OpenInference, OpenLLMetry) are attributed.

Every span is made with the plain SDK and read through the four converters (SDK
span, full OTLP protobuf, the collector's slim decoder, OTLP JSON), which must
agree; the records then go through the engine's ``evaluate_trace``.
"""

# ruff: noqa: SIM117  (nested ``with`` blocks draw the span tree)

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Span, Status, StatusCode

from llmspans import _attributes as A
from llmspans.collector._protobuf import SLIM_EXPORT_REQUEST, SlimDecoder, record_from_otlp_span
from llmspans.core.conventions import MAX_INDEXED_DOCUMENTS
from llmspans.core.convert import records_from_otlp_json
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.metrics import Aggregates, accumulate
from llmspans.core.model import Thresholds, TraceResult
from llmspans.core.records import SpanRecord
from llmspans.embedded import record_from_readable_span

Tracing = tuple[TracerProvider, InMemorySpanExporter]


def _records(spans: Sequence[ReadableSpan]) -> list[SpanRecord]:
    """The records of ``spans``, checked equal through every converter."""
    expected = sorted(map(record_from_readable_span, spans), key=lambda r: r.span_id)
    request = encode_spans(spans)
    proto = sorted(
        (
            record_from_otlp_span(span)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ),
        key=lambda r: r.span_id,
    )
    assert proto == expected
    slim: Any = SLIM_EXPORT_REQUEST.FromString(request.SerializeToString())
    decoder = SlimDecoder()
    for _ in range(2):  # the second pass reads from the decoder's cache
        from_slim = sorted(
            (
                decoder.record(span)
                for resource in slim.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            ),
            key=lambda r: r.span_id,
        )
        assert from_slim == expected
    as_json = json.loads(json.dumps(json_format.MessageToDict(request)))
    assert sorted(records_from_otlp_json(as_json), key=lambda r: r.span_id) == expected
    return expected


def _evaluate(tracing: Tracing) -> tuple[dict[str, SpanRecord], TraceResult, Aggregates]:
    _, exporter = tracing
    records = _records(exporter.get_finished_spans())
    result = evaluate_trace(records, Thresholds())
    aggregates = Aggregates()
    accumulate(result, aggregates)
    return {record.name: record for record in records}, result, aggregates


@contextmanager
def _span(tracing: Tracing, name: str, **attributes: Any) -> Iterator[Span]:
    tracer = tracing[0].get_tracer("peer")
    with tracer.start_as_current_span(name, attributes=attributes) as span:
        yield span


def _verdicts(result: TraceResult) -> list[tuple[str, str, str | None, str | None]]:
    return [
        (run.pipeline, verdict.outcome, verdict.failure_stage, verdict.failure_reason)
        for run, verdict in result.runs
    ]


def _stage_calls(aggregates: Aggregates) -> dict[tuple[str, str, str], float]:
    found: dict[tuple[str, str, str], float] = {}
    for (name, labels), value in aggregates.counters.items():
        if name == A.METRIC_STAGE_CALLS:
            by = dict(labels)
            found[(by["pipeline"], by["stage"], by["status"])] = value
    return found


# --- OpenInference ---------------------------------------------------------------------


def _openinference_rag(tracing: Tracing, *, documents: int, finish: str) -> None:
    with _span(tracing, "RunnableSequence", **{"openinference.span.kind": "CHAIN"}):
        with _span(tracing, "RunnableParallel", **{"openinference.span.kind": "CHAIN"}):
            retriever: dict[str, Any] = {"openinference.span.kind": "RETRIEVER"}
            for index in range(documents):
                retriever[f"retrieval.documents.{index}.document.id"] = (
                    f"doc-{index}" if index else 7
                )
                retriever[f"retrieval.documents.{index}.document.score"] = 0.9 - index / 10
                retriever[f"retrieval.documents.{index}.document.content"] = "text " * 40
            with _span(tracing, "VectorStoreRetriever", **retriever):
                pass
        with _span(
            tracing,
            "ChatOpenAI",
            **{
                "openinference.span.kind": "LLM",
                "llm.finish_reason": finish,
                "llm.token_count.prompt": 10,
            },
        ):
            pass


def test_openinference_chain_is_the_run_and_its_retriever_and_llm_are_stages(
    tracing: Tracing,
) -> None:
    _openinference_rag(tracing, documents=3, finish="stop")
    records, result, aggregates = _evaluate(tracing)
    root = records["RunnableSequence"]
    assert root.stage == A.STAGE_PIPELINE and root.pipeline == "RunnableSequence"
    inner = records["RunnableParallel"]
    assert inner.stage is None and inner.opens_run
    retriever = records["VectorStoreRetriever"]
    assert retriever.stage == A.STAGE_RETRIEVAL
    assert retriever.document_ids == ("7", "doc-1", "doc-2")
    assert retriever.scores == (0.9, 0.8, 0.7)
    assert records["ChatOpenAI"].stage == A.STAGE_GENERATION
    assert records["ChatOpenAI"].refused is None
    assert _verdicts(result) == [("RunnableSequence", "unverified", None, None)]
    assert _stage_calls(aggregates) == {
        ("RunnableSequence", "retrieval", "ok"): 1.0,
        ("RunnableSequence", "generation", "ok"): 1.0,
    }


def test_openinference_empty_retriever_is_retrieval_empty(tracing: Tracing) -> None:
    _openinference_rag(tracing, documents=0, finish="stop")
    records, result, _ = _evaluate(tracing)
    assert records["VectorStoreRetriever"].document_ids == ()
    assert _verdicts(result) == [("RunnableSequence", "failure", "retrieval", "empty")]


def test_openinference_content_filter_is_a_refusal(tracing: Tracing) -> None:
    _openinference_rag(tracing, documents=2, finish="content_filter")
    _, result, _ = _evaluate(tracing)
    assert _verdicts(result) == [("RunnableSequence", "failure", "generation", "refused")]


def test_reranker_is_context_selection(tracing: Tracing) -> None:
    with _span(tracing, "Agent", **{"openinference.span.kind": "AGENT"}):
        with _span(
            tracing,
            "retrieve",
            **{
                "openinference.span.kind": "RETRIEVER",
                "retrieval.documents.0.document.id": "a",
                "retrieval.documents.1.document.id": "b",
            },
        ):
            pass
        with _span(
            tracing,
            "rerank",
            **{
                "openinference.span.kind": "RERANKER",
                "reranker.input_documents.0.document.id": "a",
                "reranker.input_documents.1.document.id": "b",
                "reranker.output_documents.0.document.id": "b",
                "reranker.output_documents.0.document.score": 0.4,
            },
        ):
            pass
    records, result, _ = _evaluate(tracing)
    rerank = records["rerank"]
    assert rerank.stage == A.STAGE_CONTEXT_SELECTION
    assert rerank.input_ids == ("a", "b") and rerank.selected_ids == ("b",)
    assert records["retrieve"].scores is None  # not every document has a score
    assert _verdicts(result) == [("Agent", "unverified", None, None)]


# --- gen_ai.* --------------------------------------------------------------------------


def test_invoke_agent_under_a_server_span_is_the_run(tracing: Tracing) -> None:
    with _span(tracing, "POST /ask", **{"http.request.method": "POST"}):
        with _span(
            tracing,
            "invoke_agent helper",
            **{"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "helpdesk"},
        ):
            with _span(
                tracing,
                "retrieval kb",
                **{
                    "gen_ai.operation.name": "retrieval",
                    "gen_ai.retrieval.documents": json.dumps(
                        [{"id": "kb-1", "score": 0.8}, {"id": "kb-2", "score": 0.3}]
                    ),
                },
            ):
                pass
            with _span(tracing, "chat gpt-4o", **{"gen_ai.operation.name": "chat"}) as chat:
                chat.set_status(Status(StatusCode.ERROR, "boom"))
                chat.set_attribute("error.type", "InternalServerError")
            with _span(tracing, "execute_tool refund", **{"gen_ai.operation.name": "execute_tool"}):
                pass
            with _span(tracing, "embeddings m", **{"gen_ai.operation.name": "embeddings"}):
                pass
    records, result, aggregates = _evaluate(tracing)
    agent = records["invoke_agent helper"]
    assert agent.opens_run and agent.stage is None and agent.pipeline == "helpdesk"
    assert records["retrieval kb"].document_ids == ("kb-1", "kb-2")
    assert records["retrieval kb"].scores == (0.8, 0.3)
    assert records["execute_tool refund"].stage == A.STAGE_ACTION
    assert records["embeddings m"].stage is None
    assert records["POST /ask"].stage is None
    (run, verdict), *_ = result.runs
    assert len(result.runs) == 1 and run.root is agent
    assert (verdict.failure_stage, verdict.failure_reason) == ("generation", "error")
    assert verdict.evidence is not None and verdict.evidence.detail == "InternalServerError"
    assert _stage_calls(aggregates)[("helpdesk", "generation", "error")] == 1.0


def test_finish_reason_content_filter_is_a_refusal(tracing: Tracing) -> None:
    with _span(tracing, "invoke_workflow triage", **{"gen_ai.operation.name": "invoke_workflow"}):
        with _span(
            tracing,
            "chat m",
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.response.finish_reasons": ("content_filter",),
            },
        ):
            pass
    records, result, _ = _evaluate(tracing)
    assert records["chat m"].refused is True
    assert _verdicts(result) == [("triage", "failure", "generation", "refused")]


# --- OpenLLMetry -----------------------------------------------------------------------


def test_traceloop_workflow_tasks_and_tool(tracing: Tracing) -> None:
    workflow = {"traceloop.workflow.name": "support"}
    with _span(tracing, "support.workflow", **workflow, **{"traceloop.span.kind": "workflow"}):
        with _span(tracing, "plan.task", **workflow, **{"traceloop.span.kind": "task"}):
            with _span(
                tracing,
                "openai.chat",
                **workflow,
                **{"gen_ai.operation.name": "chat", "gen_ai.response.finish_reasons": ("stop",)},
            ):
                pass
        with _span(tracing, "refund.tool", **workflow, **{"traceloop.span.kind": "tool"}) as tool:
            tool.set_status(Status(StatusCode.ERROR))
    records, result, aggregates = _evaluate(tracing)
    assert records["support.workflow"].stage == A.STAGE_PIPELINE
    assert records["plan.task"].stage is None
    assert records["openai.chat"].pipeline == "support"
    assert _verdicts(result) == [("support", "failure", "action", "error")]
    assert _stage_calls(aggregates) == {
        ("support", "generation", "ok"): 1.0,
        ("support", "action", "error"): 1.0,
    }


# --- mixed with llmspans' own spans and precedence -------------------------------------


def _own_pipeline(tracing: Tracing) -> AbstractContextManager[Span]:
    return _span(
        tracing,
        "invoke_workflow rag",
        **{
            A.STAGE: A.STAGE_PIPELINE,
            A.PIPELINE: "rag",
            A.GEN_AI_OPERATION_NAME: A.OP_INVOKE_WORKFLOW,
        },
    )


def test_foreign_chain_inside_an_llmspans_pipeline_is_not_a_run(tracing: Tracing) -> None:
    with _own_pipeline(tracing) as root:
        with _span(tracing, "RunnableSequence", **{"openinference.span.kind": "CHAIN"}):
            with _span(tracing, "ChatOpenAI", **{"openinference.span.kind": "LLM"}) as llm:
                llm.set_status(Status(StatusCode.ERROR))
        root.set_status(Status(StatusCode.ERROR))
    _, result, aggregates = _evaluate(tracing)
    assert _verdicts(result) == [("rag", "failure", "generation", "error")]
    assert _stage_calls(aggregates) == {("rag", "generation", "error"): 1.0}


def test_llmspans_attributes_win(tracing: Tracing) -> None:
    with _own_pipeline(tracing):
        with _span(
            tracing,
            "chat own",
            **{
                A.STAGE: A.STAGE_GENERATION,
                A.GENERATION_REFUSED: False,
                "gen_ai.operation.name": "chat",
                "gen_ai.response.finish_reasons": ("content_filter",),
                "openinference.span.kind": "RETRIEVER",
            },
        ):
            pass
        with _span(
            tracing,
            "both",
            **{"gen_ai.operation.name": "execute_tool", "openinference.span.kind": "LLM"},
        ):
            pass
    records, result, _ = _evaluate(tracing)
    assert records["chat own"].stage == A.STAGE_GENERATION
    assert records["chat own"].refused is False
    assert records["both"].stage == A.STAGE_ACTION  # gen_ai.* over OpenInference
    assert _verdicts(result) == [("rag", "unverified", None, None)]


def test_a_span_without_other_conventions_is_unchanged(tracing: Tracing) -> None:
    with _span(tracing, "plain", **{"http.request.method": "GET", "retrieval.count": 3}):
        pass
    (record,) = _evaluate(tracing)[0].values()
    assert record.stage is None and not record.opens_run and record.bad_attributes == 0


# --- hostile input ---------------------------------------------------------------------


def test_indexed_documents_are_bounded_and_bad_values_counted() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=5000))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = (provider, exporter)
    attributes: dict[str, Any] = {"openinference.span.kind": "RETRIEVER"}
    for index in range(MAX_INDEXED_DOCUMENTS + 500):
        attributes[f"retrieval.documents.{index}.document.id"] = f"d{index}"
    attributes["retrieval.documents.x.document.id"] = "not indexed"
    attributes["retrieval.documents.0.document.score"] = "high"  # wrong type
    attributes["openinference.span.kind.extra"] = 1
    with _span(tracing, "RunnableSequence", **{"openinference.span.kind": "CHAIN"}):
        with _span(tracing, "retriever", **attributes):
            pass
        with _span(tracing, "bad", **{"openinference.span.kind": 3}):
            pass
    records, _, _ = _evaluate(tracing)
    retriever = records["retriever"]
    assert retriever.document_ids is not None
    assert len(retriever.document_ids) == MAX_INDEXED_DOCUMENTS
    assert retriever.bad_attributes == 2  # the wrong score, the cap
    assert records["bad"].bad_attributes == 1 and records["bad"].stage is None


def test_semconv_documents_that_are_not_a_list_are_bad(tracing: Tracing) -> None:
    with _span(
        tracing,
        "retrieval x",
        **{"gen_ai.operation.name": "retrieval", "gen_ai.retrieval.documents": "{not json"},
    ):
        pass
    (record,) = _evaluate(tracing)[0].values()
    assert record.stage == A.STAGE_RETRIEVAL and record.document_ids is None
    assert record.bad_attributes == 1


def test_indexed_documents_are_read_on_openinference_retrievers_only(tracing: Tracing) -> None:
    with _span(
        tracing,
        "retrieval x",
        **{"gen_ai.operation.name": "retrieval", "retrieval.documents.0.document.id": "a"},
    ):
        pass
    (record,) = _evaluate(tracing)[0].values()  # every converter agrees
    assert record.stage == A.STAGE_RETRIEVAL and record.document_ids is None


def test_documents_without_ids_are_unknown_not_empty(tracing: Tracing) -> None:
    with _span(
        tracing,
        "retriever",
        **{
            "openinference.span.kind": "RETRIEVER",
            "retrieval.documents.0.document.content": "Refunds take 5 days. " * 10,
        },
    ):
        pass
    (record,) = _evaluate(tracing)[0].values()
    assert record.stage == A.STAGE_RETRIEVAL and record.document_ids is None


# --- OpenLLMetry vector-store queries ----------------------------------------------------


def _vector_query(
    tracing: Tracing, name: str, results: list[dict[str, Any]], **attributes: Any
) -> None:
    with _span(tracing, "workflow", **{"traceloop.span.kind": "workflow"}):
        with _span(tracing, name, **attributes) as span:
            for result in results:
                span.add_event("db.query.result", result)
            span.add_event("db.query.embeddings", {"db.query.embeddings.vector": "[1.0]"})


def test_openllmetry_chroma_query_results_are_the_retrieved_ids(tracing: Tracing) -> None:
    _vector_query(
        tracing,
        "chroma.query",
        [
            {"db.query.result.id": "doc-a", "db.query.result.distance": 0.1},
            {"db.query.result.id": "doc-c", "db.query.result.distance": 0.4},
        ],
        **{"db.system": "chroma", "db.operation": "query"},
    )
    records, result, _ = _evaluate(tracing)
    query = records["chroma.query"]
    assert (query.stage, query.document_ids, query.scores) == (
        A.STAGE_RETRIEVAL,
        ("doc-a", "doc-c"),
        None,  # distances are not scores
    )
    assert _verdicts(result) == [("workflow", "unverified", None, None)]


def test_openllmetry_empty_vector_query_is_retrieval_empty(tracing: Tracing) -> None:
    _vector_query(tracing, "chroma.query", [], **{"db.system": "chroma", "db.operation": "query"})
    records, result, _ = _evaluate(tracing)
    assert records["chroma.query"].document_ids == ()
    assert _verdicts(result) == [("workflow", "failure", "retrieval", "empty")]


def test_pinecone_query_by_its_span_name_with_scores(tracing: Tracing) -> None:
    _vector_query(
        tracing,
        "pinecone.query",
        [
            {"db.query.result.id": "p1", "db.query.result.score": 0.9},
            {"db.query.result.id": "p2", "db.query.result.score": 0.5},
        ],
        **{"db.system": "Pinecone"},
    )
    query = _evaluate(tracing)[0]["pinecone.query"]
    assert (query.document_ids, query.scores) == (("p1", "p2"), (0.9, 0.5))


def test_other_database_spans_and_operations_are_no_stage(tracing: Tracing) -> None:
    _vector_query(tracing, "SELECT", [], **{"db.system": "postgresql", "db.operation": "query"})
    _vector_query(tracing, "chroma.add", [], **{"db.system": "chroma", "db.operation": "add"})
    records, result, _ = _evaluate(tracing)
    assert records["SELECT"].stage is None and records["chroma.add"].stage is None
    assert _verdicts(result) == [("workflow", "unverified", None, None)] * 2


def test_a_result_without_id_makes_the_ids_unknown(tracing: Tracing) -> None:
    _vector_query(
        tracing,
        "chroma.query",
        [{"db.query.result.id": "doc-a"}, {"db.query.result.distance": 0.3}],
        **{"db.system": "chroma", "db.operation": "query"},
    )
    query = _evaluate(tracing)[0]["chroma.query"]
    assert query.stage == A.STAGE_RETRIEVAL and query.document_ids is None


def test_result_events_are_bounded() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_events=5000))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    results = [{"db.query.result.id": f"d{index}"} for index in range(MAX_INDEXED_DOCUMENTS + 500)]
    results[3] = {"db.query.result.id": "d3", "db.query.result.score": "high"}  # wrong type
    _vector_query(
        (provider, exporter),
        "chroma.query",
        results,
        **{"db.system": "chroma", "db.operation": "query"},
    )
    query = _evaluate((provider, exporter))[0]["chroma.query"]
    assert query.document_ids is not None and len(query.document_ids) == MAX_INDEXED_DOCUMENTS
    assert query.scores is None
    assert query.bad_attributes == 2  # the wrong score, the cap
