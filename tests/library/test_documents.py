"""Document ids and scores read from what retrievals return, in every supported shape."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from pydantic import BaseModel

from llmspans._documents import document_texts, extract_documents


@dataclass
class Doc:
    id: str
    score: float
    text: str = ""


class Model(BaseModel):
    doc_id: int
    relevance_score: float


class Hit:
    def __init__(self, id: object, score: float | None = None) -> None:
        self.id = id
        self.score = score


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([{"id": "a", "score": 0.9}, {"id": "b", "score": 0.1}], (["a", "b"], [0.9, 0.1])),
        ([Doc("a", 1.0), Doc("b", 0.5)], (["a", "b"], [1.0, 0.5])),
        ([Model(doc_id=7, relevance_score=0.3)], (["7"], [0.3])),
        ([Hit("x", 2), Hit(42, 1)], (["x", "42"], [2.0, 1.0])),
        ([Hit("x"), Hit("y", 0.1)], (["x", "y"], None)),  # scores only when every item has one
        ([{"metadata": {"id": "m1"}, "page_content": "text"}], (["m1"], None)),
        ([{"metadata": {"source": "file.md"}}], (["file.md"], None)),
        ([({"id": "p"}, 0.7), (Doc("q", 0.0), 0.2)], (["p", "q"], [0.7, 0.2])),
        ((["doc-1", "doc-2"]), (["doc-1", "doc-2"], None)),
        ([3, 4], (["3", "4"], None)),
        ([], ([], None)),
        ({"documents": [{"id": "a"}]}, (["a"], None)),
        ({"ids": [["c1", "c2"]], "distances": [[0.1, 0.2]]}, (["c1", "c2"], None)),
        ({"ids": ["f1"]}, (["f1"], None)),
        (Doc("single", 0.4), (["single"], [0.4])),
        ({"node": {"node_id": "n1"}, "score": 0.8}, (["n1"], [0.8])),
    ],
)
def test_extract_documents_shapes(value: object, expected: object) -> None:
    assert extract_documents(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "some text",
        b"bytes",
        ["a document text with spaces"],  # text, not ids
        [{"id": "a"}, {"title": "no id"}],  # all or nothing
        [{"id": True}],
        {"answer": 42},
        (x for x in ["a"]),
        [1.5],
    ],
)
def test_extract_documents_gives_up_cleanly(value: object) -> None:
    assert extract_documents(value) is None


def test_uuid_ids_and_nan_scores() -> None:
    ident = uuid.UUID(int=5)
    assert extract_documents([Hit(ident, float("nan"))]) == ([str(ident)], None)


def test_numpy_scores_and_ids() -> None:
    np = pytest.importorskip("numpy")
    hits = [Hit(np.int64(5), np.float32(0.5)), Hit("b", np.float64(0.25))]
    assert extract_documents(hits) == (["5", "b"], [0.5, 0.25])


def test_langchain_documents() -> None:
    documents = pytest.importorskip("langchain_core.documents")
    docs = [
        documents.Document(page_content="alpha", metadata={"id": "lc-1"}),
        documents.Document(page_content="beta", id="lc-2"),
    ]
    assert extract_documents(docs) == (["lc-1", "lc-2"], None)
    assert extract_documents([(docs[0], 0.9), (docs[1], 0.4)]) == (["lc-1", "lc-2"], [0.9, 0.4])
    assert document_texts(docs) == ["alpha", "beta"]


def test_llama_index_nodes_with_score() -> None:
    schema = pytest.importorskip("llama_index.core.schema")
    nodes = [
        schema.NodeWithScore(node=schema.TextNode(text="one", id_="li-1"), score=0.75),
        schema.NodeWithScore(node=schema.TextNode(text="two", id_="li-2"), score=0.25),
    ]
    assert extract_documents(nodes) == (["li-1", "li-2"], [0.75, 0.25])
    assert document_texts(nodes) == ["one", "two"]


def test_qdrant_scored_points() -> None:
    models = pytest.importorskip("qdrant_client.models")
    points = [
        models.ScoredPoint(id=11, version=1, score=0.9, payload={"text": "x"}),
        models.ScoredPoint(id=str(uuid.UUID(int=3)), version=1, score=0.5),
    ]
    assert extract_documents(points) == (["11", str(uuid.UUID(int=3))], [0.9, 0.5])


def test_document_texts() -> None:
    assert document_texts([{"text": "a"}, Doc("b", 0, text="bee"), "raw"]) == ["a", "bee", "raw"]
    assert document_texts({"documents": [{"content": "c"}]}) == ["c"]
    assert document_texts(42) is None
