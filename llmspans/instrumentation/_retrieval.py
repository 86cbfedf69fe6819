"""Retrieval facts shared by the vector-store and framework instrumentors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from llmspans import _attributes as attr
from llmspans._documents import document_texts, extract_documents
from llmspans.instrumentation._base import Request, StageCall
from llmspans.instrumentation._semconv import query_text, retrieval_documents


def retrieval_request(
    data_source: str | None,
    *,
    kind: SpanKind = SpanKind.CLIENT,
    db_system: str | None = None,
    top_k: int | None = None,
    query: object = None,
) -> Request:
    """A ``retrieval {data_source}`` stage span."""
    return Request(
        stage=attr.STAGE_RETRIEVAL,
        name=attr.span_name(attr.STAGE_RETRIEVAL, data_source),
        kind=kind,
        attributes={
            attr.GEN_AI_OPERATION_NAME: attr.OP_RETRIEVAL,
            attr.GEN_AI_DATA_SOURCE_ID: data_source,
            attr.DB_SYSTEM_NAME: db_system,
            attr.DB_COLLECTION_NAME: data_source if db_system else None,
            attr.GEN_AI_REQUEST_TOP_K: top_k,
        },
        content={attr.RETRIEVAL_QUERY: query, attr.GEN_AI_RETRIEVAL_QUERY_TEXT: query_text(query)},
    )


def record_documents(
    call: StageCall,
    ids: Sequence[str],
    scores: Sequence[float] | None = None,
    *,
    distances: Sequence[float] | None = None,
    texts: Sequence[str] | None = None,
) -> None:
    """Document ids in rank order, with scores (or distances) in the same order.

    The id list is written even when empty: an empty retrieval is a fact the
    attribution rules need (reason ``empty``).
    """
    call.span.set_attribute(attr.RETRIEVAL_DOCUMENT_IDS, list(ids))
    call.set(attr.GEN_AI_RETRIEVAL_DOCUMENTS, retrieval_documents(ids, scores))
    if scores is not None and len(scores) == len(ids):
        call.set(attr.RETRIEVAL_SCORES, [float(s) for s in scores])
    if distances is not None and len(distances) == len(ids):
        call.set(attr.RETRIEVAL_DISTANCES, [float(d) for d in distances])
    if texts:
        call.set_content({attr.RETRIEVAL_DOCUMENTS_CONTENT: list(texts)})


def record_retrieved(call: StageCall, documents: Any) -> Any:
    """A framework retriever's result (read like a decorated retrieval's), returned as is."""
    found = extract_documents(documents)
    if found is not None:
        ids, scores = found
        record_documents(call, ids, scores, texts=document_texts(documents))
    return documents
