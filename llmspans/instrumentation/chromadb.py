"""chromadb: ``Collection.query`` -> retrieval spans with document ids and scores.

Wrapped public methods: ``Collection.query`` and ``AsyncCollection.query``. The span
is ``retrieval {collection name}`` with ``gen_ai.request.top_k`` (``n_results``),
the ids in rank order and similarity scores (higher is better, as ``min_score``
expects): ``1 - distance`` in the ``cosine`` and ``ip`` spaces, ``1 - distance / 2``
in the ``l2`` space (chromadb's squared L2 distance; for unit-length embeddings,
which most embedding models produce, that is the cosine similarity). The ``l2``
distances are also recorded as they are (``llmspans.retrieval.distances``). A
batch query (several query embeddings or texts) records the ranked lists one
after the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from opentelemetry.trace import Tracer

from llmspans.instrumentation._base import Request, StageCall, as_float, as_int, as_str, field_of
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._retrieval import record_documents, retrieval_request
from llmspans.instrumentation._versions import VersionedInstrumentor

DB_SYSTEM = "chromadb"
_KIND = "chromadb.query"
_SIMILARITY_SPACES = frozenset({"cosine", "ip"})


def _request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    query = kwargs.get("query_texts")
    return retrieval_request(
        as_str(getattr(instance, "name", None)),
        db_system=DB_SYSTEM,
        top_k=as_int(kwargs.get("n_results", 10)),
        query=query,
    )


def _space(collection: Any) -> str:
    """The distance function of the collection (chromadb's default: ``l2``)."""
    configuration = getattr(collection, "configuration", None) or {}
    for index in ("hnsw", "spann"):
        space = as_str(field_of(field_of(configuration, index), "space"))
        if space:
            return space
    metadata = getattr(collection, "metadata", None) or {}
    return as_str(field_of(metadata, "hnsw:space")) or "l2"


def _flatten(rows: Any) -> list[Any]:
    return [value for row in rows or () for value in row or ()]


def _respond(call: StageCall, result: Any) -> Any:
    ids = [str(i) for i in _flatten(field_of(result, "ids"))]
    raw = [as_float(d) for d in _flatten(field_of(result, "distances"))]
    distances = [d for d in raw if d is not None] if raw else None
    texts = [t for t in _flatten(field_of(result, "documents")) if isinstance(t, str)]
    if distances is None:
        record_documents(call, ids, texts=texts)
    elif _space(call.instance) in _SIMILARITY_SPACES:
        record_documents(call, ids, [1.0 - d for d in distances], texts=texts)
    else:
        # Squared L2: for unit-length embeddings d = 2 - 2 cos, so 1 - d / 2 is the
        # cosine similarity the other spaces report; the distances are kept as well.
        scores = [1.0 - d / 2.0 for d in distances]
        record_documents(call, ids, scores, distances=distances, texts=texts)
    return result


class ChromaInstrumentor(VersionedInstrumentor):
    """Traces chromadb collection queries (in-process and HTTP clients)."""

    library: ClassVar[str] = "chromadb"
    requirement: ClassVar[str] = "chromadb >= 0.5"
    tested: ClassVar[str] = "< 2"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        return (
            Patch("chromadb.api.models.Collection", "Collection.query", _KIND, _request, _respond),
            Patch(
                "chromadb.api.models.AsyncCollection",
                "AsyncCollection.query",
                _KIND,
                _request,
                _respond,
                is_async=True,
            ),
        )
