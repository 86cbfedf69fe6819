"""chromadb (in process) and qdrant (local ``:memory:`` mode) queries -> retrieval spans."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import chromadb
import pytest
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from opentelemetry.trace import SpanKind, StatusCode
from qdrant_client import AsyncQdrantClient, QdrantClient, models

import llmspans
from llmspans import _attributes as attr

from .conftest import Spans, decorated_stage, pipeline_root

_names = itertools.count()


class LetterEmbedding(EmbeddingFunction[Documents]):
    """A tiny deterministic embedding (letter counts): no model download."""

    def __init__(self) -> None:
        return

    def __call__(self, input: Documents) -> Embeddings:
        import numpy as np

        return [
            np.array(
                [text.count("a") + 1.0, text.count("e") + 1.0, len(text) / 10], dtype=np.float32
            )
            for text in input
        ]

    @staticmethod
    def name() -> str:
        return "letter-counts"

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> LetterEmbedding:
        return LetterEmbedding()


def _collection(space: str | None = None) -> Any:
    client = chromadb.EphemeralClient()
    configuration: Any = {"hnsw": {"space": space}} if space else None
    collection = client.create_collection(
        f"faq{next(_names)}", embedding_function=LetterEmbedding(), configuration=configuration
    )
    collection.add(
        ids=["doc-a", "doc-b", "doc-c"],
        documents=["banana bread", "green tree", "apple pie"],
    )
    return collection


def test_chroma_query_cosine_records_ids_and_similarity_scores(spans: Spans) -> None:
    collection = _collection("cosine")
    with pipeline_root("rag"):
        result = collection.query(query_texts=["banana"], n_results=2)
    span = spans.one(f"retrieval {collection.name}")
    assert span.kind is SpanKind.CLIENT
    distances = result["distances"]
    assert distances is not None
    attributes = spans.attributes(f"retrieval {collection.name}")
    documents = json.loads(attributes.pop(attr.GEN_AI_RETRIEVAL_DOCUMENTS))
    assert [d["id"] for d in documents] == result["ids"][0]
    assert [d["score"] for d in documents] == pytest.approx([1.0 - d for d in distances[0]])
    assert attributes == {
        attr.STAGE: "retrieval",
        attr.PIPELINE: "rag",
        attr.GEN_AI_OPERATION_NAME: "retrieval",
        attr.GEN_AI_DATA_SOURCE_ID: collection.name,
        attr.DB_SYSTEM_NAME: "chromadb",
        attr.DB_COLLECTION_NAME: collection.name,
        attr.GEN_AI_REQUEST_TOP_K: 2,
        attr.RETRIEVAL_DOCUMENT_IDS: result["ids"][0],
        attr.RETRIEVAL_SCORES: pytest.approx([1.0 - d for d in distances[0]]),
    }
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS][0] == "doc-a"


def test_chroma_l2_space_records_scores_and_distances(spans: Spans) -> None:
    collection = _collection()
    result = collection.query(query_embeddings=[[2.0, 1.0, 1.2]], n_results=3)
    attributes = spans.attributes()
    distances = result["distances"]
    assert distances is not None
    assert attributes[attr.RETRIEVAL_DISTANCES] == pytest.approx(distances[0])
    assert attributes[attr.RETRIEVAL_SCORES] == pytest.approx([1 - d / 2 for d in distances[0]])
    scores = attributes[attr.RETRIEVAL_SCORES]
    assert scores == sorted(scores, reverse=True)  # rank order: the closest first
    assert len(attributes[attr.RETRIEVAL_DOCUMENT_IDS]) == 3


def test_chroma_l2_score_is_the_cosine_similarity_of_unit_vectors(spans: Spans) -> None:
    client = chromadb.EphemeralClient()
    collection = client.create_collection(f"unit{next(_names)}", embedding_function=None)
    collection.add(ids=["x", "y"], embeddings=[[1.0, 0.0], [0.6, 0.8]])
    collection.query(query_embeddings=[[1.0, 0.0]], n_results=2)
    attributes = spans.attributes()
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS] == ["x", "y"]
    assert attributes[attr.RETRIEVAL_SCORES] == pytest.approx([1.0, 0.6], abs=1e-5)


def test_chroma_batch_query_concatenates_ranked_lists(spans: Spans) -> None:
    collection = _collection("cosine")
    result = collection.query(query_texts=["banana", "tree"], n_results=1)
    assert spans.attributes()[attr.RETRIEVAL_DOCUMENT_IDS] == [
        result["ids"][0][0],
        result["ids"][1][0],
    ]


def test_chroma_empty_result_is_recorded(spans: Spans) -> None:
    collection = _collection("cosine")
    collection.query(query_texts=["banana"], n_results=2, where={"missing": "x"})
    assert spans.attributes()[attr.RETRIEVAL_DOCUMENT_IDS] == []


def test_no_query_text_without_capture(spans: Spans) -> None:
    _collection("cosine").query(query_texts=["banana"], n_results=1)
    attributes = spans.attributes()
    assert attr.GEN_AI_RETRIEVAL_QUERY_TEXT not in attributes
    assert attr.RETRIEVAL_QUERY not in attributes


@pytest.mark.usefixtures("capture_content")
def test_chroma_content_with_capture_on(spans: Spans) -> None:
    collection = _collection("cosine")
    collection.query(query_texts=["banana"], n_results=1)
    attributes = spans.attributes()
    assert "banana" in attributes[attr.RETRIEVAL_QUERY]
    assert attributes[attr.GEN_AI_RETRIEVAL_QUERY_TEXT] == "banana"
    assert "banana bread" in attributes[attr.RETRIEVAL_DOCUMENTS_CONTENT]


def test_chroma_error_propagates(spans: Spans) -> None:
    collection = _collection("cosine")
    with pytest.raises(ValueError):
        collection.query(n_results=2)  # no query input
    span = spans.one()
    assert span.status.status_code is StatusCode.ERROR
    assert spans.attributes()[attr.ERROR_TYPE] == "ValueError"


def test_chroma_inside_decorated_retrieval_enriches(spans: Spans) -> None:
    collection = _collection("cosine")
    with decorated_stage("retrieval", "faq", pipeline="rag"):
        collection.query(query_texts=["banana"], n_results=2)
    assert spans.names() == ["retrieval faq"]
    attributes = spans.attributes()
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS][0] == "doc-a"
    assert attributes[attr.DB_SYSTEM_NAME] == "chromadb"
    assert attr.GEN_AI_OPERATION_NAME not in attributes


def test_chroma_inside_decorated_retrieval_keeps_its_data_source(
    spans: Spans, library_provider: None
) -> None:
    collection = _collection("cosine")

    @llmspans.retrieval(data_source="faq")
    def search(question: str) -> Any:
        inner = _collection("cosine")
        inner.query(query_texts=[question], n_results=1)  # a nested query underneath
        return collection.query(query_texts=[question], n_results=2)

    search("banana")
    attributes = spans.attributes("retrieval faq")
    assert attributes[attr.GEN_AI_DATA_SOURCE_ID] == "faq"
    assert attributes[attr.DB_COLLECTION_NAME] == collection.name


@pytest.mark.usefixtures("capture_content", "library_provider")
def test_a_raw_query_result_from_a_decorated_retrieval_records_its_texts(spans: Spans) -> None:
    collection = _collection("cosine")

    @llmspans.retrieval(data_source="faq")
    def search(question: str) -> Any:
        return collection.query(query_texts=[question], n_results=2)

    result = search("banana")
    attributes = spans.attributes("retrieval faq")
    assert attributes[attr.RETRIEVAL_DOCUMENT_IDS] == result["ids"][0]
    texts = attributes[attr.RETRIEVAL_DOCUMENTS_CONTENT]
    documents = result["documents"]
    assert documents is not None
    for text in documents[0]:
        assert text in texts
    assert '[""]' not in texts and '""' not in texts


def _qdrant_points() -> list[models.PointStruct]:
    vectors: Sequence[tuple[int | str, list[float]]] = [
        (1, [1.0, 0.0, 0.0]),
        ("8f5b1c3e-2f6b-4c1e-9d0a-3f1e2b4c5d6e", [0.8, 0.2, 0.0]),
        (3, [0.0, 1.0, 0.0]),
    ]
    return [models.PointStruct(id=i, vector=v, payload={"n": str(i)}) for i, v in vectors]


def _qdrant() -> QdrantClient:
    client = QdrantClient(":memory:")
    client.create_collection(
        "docs", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
    )
    client.upsert("docs", points=_qdrant_points())
    return client


def test_qdrant_query_points(spans: Spans) -> None:
    client = _qdrant()
    with pipeline_root("rag"):
        response = client.query_points("docs", query=[1.0, 0.1, 0.0], limit=2)
    assert spans.attributes("retrieval docs") == {
        attr.STAGE: "retrieval",
        attr.PIPELINE: "rag",
        attr.GEN_AI_OPERATION_NAME: "retrieval",
        attr.GEN_AI_DATA_SOURCE_ID: "docs",
        attr.DB_SYSTEM_NAME: "qdrant",
        attr.DB_COLLECTION_NAME: "docs",
        attr.GEN_AI_REQUEST_TOP_K: 2,
        attr.RETRIEVAL_DOCUMENT_IDS: ["1", "8f5b1c3e-2f6b-4c1e-9d0a-3f1e2b4c5d6e"],
        attr.RETRIEVAL_SCORES: pytest.approx([p.score for p in response.points]),
        attr.GEN_AI_RETRIEVAL_DOCUMENTS: json.dumps(
            [{"id": str(p.id), "score": p.score} for p in response.points]
        ),
    }
    assert spans.one("retrieval docs").kind is SpanKind.CLIENT


def test_qdrant_batch_query(spans: Spans) -> None:
    client = _qdrant()
    client.query_batch_points(
        "docs",
        requests=[
            models.QueryRequest(query=[1.0, 0.0, 0.0], limit=1),
            models.QueryRequest(query=[0.0, 1.0, 0.0], limit=1),
        ],
    )
    assert spans.attributes()[attr.RETRIEVAL_DOCUMENT_IDS] == ["1", "3"]


def test_qdrant_error_on_unknown_collection(spans: Spans) -> None:
    client = _qdrant()
    with pytest.raises(ValueError, match="not found"):
        client.query_points("nope", query=[1.0, 0.0, 0.0])
    assert spans.one("retrieval nope").status.status_code is StatusCode.ERROR


async def test_async_qdrant(spans: Spans) -> None:
    client = AsyncQdrantClient(":memory:")
    await client.create_collection(
        "docs", vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE)
    )
    await client.upsert("docs", points=_qdrant_points())
    with decorated_stage("retrieval", "kb"):
        await client.query_points("docs", query=[0.0, 1.0, 0.0], limit=1)
    assert spans.names() == ["retrieval kb"]
    assert spans.attributes()[attr.RETRIEVAL_DOCUMENT_IDS] == ["3"]
    await client.query_batch_points(
        "docs", requests=[models.QueryRequest(query=[1.0, 0.0, 0.0], limit=1)]
    )
    assert spans.attributes("retrieval docs")[attr.RETRIEVAL_DOCUMENT_IDS] == ["1"]
    await client.close()
