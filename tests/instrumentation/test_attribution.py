"""Instrumented spans carry what the attribution core needs, with the right types.

The spans exported here go through the same conversion and rules as in the
collector (``llmspans.core``): a pipeline made only of auto-instrumented calls
gets a verdict naming the stage that broke.
"""

from __future__ import annotations

import openai
import pytest
from llama_index.core.postprocessor import SimilarityPostprocessor

import llmspans
from llmspans.core.evaluate import evaluate_trace
from llmspans.core.model import Thresholds, TraceResult
from llmspans.embedded import record_from_readable_span

from .conftest import Spans
from .fake_providers import FakeProviderServer
from .test_llama_index import QdrantNodeRetriever
from .test_vector_stores import _collection, _qdrant

MESSAGES = [{"role": "user", "content": "What is the answer?"}]


pytestmark = pytest.mark.usefixtures("library_provider")


@pytest.fixture
def client(server: FakeProviderServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)


def _evaluate(spans: Spans) -> TraceResult:
    records = [record_from_readable_span(span) for span in spans.all()]
    result = evaluate_trace(records, Thresholds())
    assert result.bad_attributes == 0
    return result


def test_an_empty_vector_store_answer_is_the_root_cause(
    client: openai.OpenAI, spans: Spans
) -> None:
    collection = _collection("cosine")

    @llmspans.pipeline("faq")
    def handle() -> None:
        collection.query(query_texts=["banana"], n_results=3, where={"lang": "xx"})
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    handle()
    result = _evaluate(spans)
    [(run, verdict)] = result.runs
    assert sorted(run.stages) == ["generation", "retrieval"]
    assert (verdict.outcome, verdict.failure_stage, verdict.failure_reason) == (
        "failure",
        "retrieval",
        "empty",
    )


def test_citing_a_document_never_selected_is_an_unsupported_citation(
    client: openai.OpenAI, spans: Spans
) -> None:
    retriever = QdrantNodeRetriever(_qdrant())
    reranker = SimilarityPostprocessor(similarity_cutoff=0.5)

    @llmspans.pipeline("rag")
    def handle() -> None:
        nodes = retriever.retrieve("the first document")
        reranker.postprocess_nodes(nodes)
        # the answer cites https://docs.example/doc-1, which the model was never shown
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    handle()
    [(run, verdict)] = _evaluate(spans).runs
    assert sorted(run.stages) == ["context_selection", "generation", "retrieval"]
    assert (verdict.failure_stage, verdict.failure_reason) == ("generation", "unsupported_citation")


def test_calls_outside_a_pipeline_are_standalone_stage_spans(
    client: openai.OpenAI, spans: Spans
) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    _qdrant().query_points("docs", query=[1.0, 0.0, 0.0], limit=1)
    result = _evaluate(spans)
    assert result.runs == []
    assert sorted(record.stage or "" for record in result.standalone) == ["generation", "retrieval"]
