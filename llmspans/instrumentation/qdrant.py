"""qdrant-client: ``query_points`` and ``query_batch_points`` -> retrieval spans.

Wrapped public methods of ``QdrantClient`` and ``AsyncQdrantClient`` (remote and
local ``":memory:"`` modes alike). The span is ``retrieval {collection_name}`` with
``gen_ai.request.top_k`` (``limit``), the point ids in rank order (as strings) and
Qdrant's scores as returned: similarities for the ``Cosine`` and ``Dot`` metrics,
distances (lower is closer) for ``Euclid`` and ``Manhattan`` collections, so a
``min_score`` threshold applies only to similarity collections. A batch query
records its ranked lists one after the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from opentelemetry.trace import Tracer

from llmspans.instrumentation._base import Request, StageCall, as_float, as_int, as_str, field_of
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._retrieval import record_documents, retrieval_request
from llmspans.instrumentation._versions import VersionedInstrumentor

DB_SYSTEM = "qdrant"
_KIND = "qdrant.query"


def _collection(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    return as_str(kwargs.get("collection_name")) or (as_str(args[0]) if args else None)


def _query_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    query = kwargs.get("query")
    return retrieval_request(
        _collection(args, kwargs),
        db_system=DB_SYSTEM,
        top_k=as_int(kwargs.get("limit", 10)),
        query=query if isinstance(query, str) else None,
    )


def _batch_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    return retrieval_request(_collection(args, kwargs), db_system=DB_SYSTEM)


def _record_points(call: StageCall, responses: Iterable[Any]) -> None:
    ids: list[str] = []
    scores: list[float] = []
    for response in responses:
        for point in field_of(response, "points") or ():
            point_id = field_of(point, "id")
            if point_id is None:
                continue
            ids.append(str(point_id))
            score = as_float(field_of(point, "score"))
            scores.append(score if score is not None else float("nan"))
    record_documents(call, ids, scores)


def _query_result(call: StageCall, result: Any) -> Any:
    _record_points(call, [result])
    return result


def _batch_result(call: StageCall, result: Any) -> Any:
    _record_points(call, result or ())
    return result


class QdrantInstrumentor(VersionedInstrumentor):
    """Traces qdrant-client queries."""

    library: ClassVar[str] = "qdrant_client"
    requirement: ClassVar[str] = "qdrant-client >= 1.10"
    tested: ClassVar[str] = "< 2"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        sync_module, async_module = (
            "qdrant_client.qdrant_client",
            "qdrant_client.async_qdrant_client",
        )
        return (
            Patch(sync_module, "QdrantClient.query_points", _KIND, _query_request, _query_result),
            Patch(
                sync_module, "QdrantClient.query_batch_points", _KIND, _batch_request, _batch_result
            ),
            Patch(
                async_module,
                "AsyncQdrantClient.query_points",
                _KIND,
                _query_request,
                _query_result,
                is_async=True,
            ),
            Patch(
                async_module,
                "AsyncQdrantClient.query_batch_points",
                _KIND,
                _batch_request,
                _batch_result,
                is_async=True,
            ),
        )
