"""LlamaIndex retrievers and node postprocessors -> retrieval and context_selection spans."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from opentelemetry.trace import SpanKind, StatusCode

from llmspans import _attributes as attr

from .conftest import Spans, decorated_stage, pipeline_root
from .test_vector_stores import _qdrant


class QdrantNodeRetriever(BaseRetriever):
    """Embeds queries trivially and asks qdrant (as llama-index's Qdrant store does)."""

    def __init__(self, client: Any, top_k: int = 2) -> None:
        super().__init__()
        self._qdrant = client
        self.similarity_top_k = top_k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        vector = [1.0, 0.0, 0.0] if "first" in query_bundle.query_str else [0.0, 1.0, 0.0]
        response = self._qdrant.query_points("docs", query=vector, limit=self.similarity_top_k)
        return [
            NodeWithScore(node=TextNode(id_=str(p.id), text=f"text {p.id}"), score=p.score)
            for p in response.points
        ]


class FailingRetriever(BaseRetriever):
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise ConnectionError("index offline")


def _nodes(*scored: tuple[str, float]) -> list[NodeWithScore]:
    return [NodeWithScore(node=TextNode(id_=i, text=i), score=s) for i, s in scored]


def test_retriever_over_qdrant_is_one_retrieval_span(spans: Spans) -> None:
    retriever = QdrantNodeRetriever(_qdrant())
    with pipeline_root("rag") as root:
        nodes = retriever.retrieve("the first document")
    assert [n.node.node_id for n in nodes] == ["1", "8f5b1c3e-2f6b-4c1e-9d0a-3f1e2b4c5d6e"]
    assert spans.names() == ["retrieval QdrantNodeRetriever", "invoke_workflow rag"]
    span = spans.one("retrieval QdrantNodeRetriever")
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is not None and span.parent.span_id == root.get_span_context().span_id
    attributes = spans.attributes("retrieval QdrantNodeRetriever")
    assert attributes[attr.STAGE] == "retrieval"
    assert attributes[attr.PIPELINE] == "rag"
    assert attributes[attr.GEN_AI_REQUEST_TOP_K] == 2
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS] == [n.node.node_id for n in nodes]
    assert attributes[attr.RETRIEVAL_SCORES] == pytest.approx([n.score for n in nodes])
    assert attributes[attr.DB_SYSTEM_NAME] == "qdrant"


async def test_async_retrieve(spans: Spans) -> None:
    retriever = QdrantNodeRetriever(_qdrant(), top_k=1)
    nodes = await retriever.aretrieve("second")
    assert [n.node.node_id for n in nodes] == ["3"]
    assert spans.names() == ["retrieval QdrantNodeRetriever"]


def test_retriever_error(spans: Spans) -> None:
    with pytest.raises(ConnectionError, match="index offline"):
        FailingRetriever().retrieve("q")
    assert spans.one().status.status_code is StatusCode.ERROR


def test_postprocessor_is_a_context_selection_span(spans: Spans) -> None:
    postprocessor = SimilarityPostprocessor(similarity_cutoff=0.5)
    with pipeline_root("rag"):
        kept = postprocessor.postprocess_nodes(
            _nodes(("a", 0.9), ("b", 0.2), ("c", 0.7)), query_str="q"
        )
    assert [n.node.node_id for n in kept] == ["a", "c"]
    span = spans.one("context_selection SimilarityPostprocessor")
    assert span.kind is SpanKind.INTERNAL
    assert spans.attributes("context_selection SimilarityPostprocessor") == {
        attr.STAGE: "context_selection",
        attr.PIPELINE: "rag",
        attr.CONTEXT_INPUT_IDS: ["a", "b", "c"],
        attr.CONTEXT_SELECTED_IDS: ["a", "c"],
    }


def test_postprocessor_selecting_nothing_records_an_empty_selection(spans: Spans) -> None:
    SimilarityPostprocessor(similarity_cutoff=0.99).postprocess_nodes(_nodes(("a", 0.1)))
    assert spans.attributes()[attr.CONTEXT_SELECTED_IDS] == []


async def test_async_postprocessor_in_decorated_selection(spans: Spans) -> None:
    with decorated_stage("context_selection", "pick"):
        await SimilarityPostprocessor(similarity_cutoff=0.5).apostprocess_nodes(
            _nodes(("a", 0.9), ("b", 0.1))
        )
    assert spans.names() == ["context_selection pick"]
    assert spans.attributes()[attr.CONTEXT_SELECTED_IDS] == ["a"]
