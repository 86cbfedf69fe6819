"""LlamaIndex (``llama-index-core``): retrievers and node postprocessors -> stage spans.

Wrapped public methods of the base classes every integration inherits from:

- ``BaseRetriever.retrieve`` / ``aretrieve`` -> ``retrieval {retriever class}`` with
  the node ids and scores of the returned ``NodeWithScore`` list;
- ``BaseNodePostprocessor.postprocess_nodes`` / ``apostprocess_nodes`` (rerankers,
  similarity cut-offs, ...) -> ``context_selection {postprocessor class}`` with the
  candidate ids (``llmspans.context.input_ids``) and the kept ids
  (``llmspans.context.selected_ids``), in order.

Why wrapping rather than a span handler on LlamaIndex's instrumentation
dispatcher: a wrapped call runs inside the caller's OpenTelemetry context, so
vector-store queries made underneath (chromadb, qdrant) see the active retrieval
stage and enrich its span instead of adding a second one. Query engines and
chat engines are not stages themselves: their retrieval and postprocessing steps
are traced through these two base methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from opentelemetry.trace import SpanKind, Tracer

from llmspans import _attributes as attr
from llmspans._documents import extract_documents
from llmspans.instrumentation._base import Request, StageCall, as_int, as_str, field_of
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._retrieval import (
    record_retrieved,
    retrieval_request,
)
from llmspans.instrumentation._versions import VersionedInstrumentor

_RETRIEVERS = "llama_index.core.base.base_retriever"
_POSTPROCESSORS = "llama_index.core.postprocessor.types"


def _query_text(value: Any) -> str | None:
    return as_str(value) or as_str(field_of(value, "query_str"))


def _retriever_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    query = args[0] if args else kwargs.get("str_or_query_bundle")
    top_k = as_int(getattr(instance, "similarity_top_k", None))
    return retrieval_request(
        type(instance).__name__, kind=SpanKind.INTERNAL, top_k=top_k, query=_query_text(query)
    )


def _ids(nodes: Any) -> list[str] | None:
    found = extract_documents(nodes) if nodes is not None else None
    return found[0] if found is not None else None


def _postprocessor_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    nodes = args[0] if args else kwargs.get("nodes")
    input_ids = _ids(nodes)
    return Request(
        stage=attr.STAGE_CONTEXT_SELECTION,
        name=attr.span_name(attr.STAGE_CONTEXT_SELECTION, type(instance).__name__),
        kind=SpanKind.INTERNAL,
        attributes={
            attr.CONTEXT_INPUT_IDS: input_ids,
            attr.GEN_AI_REQUEST_TOP_K: as_int(getattr(instance, "top_n", None)),
        },
    )


def _postprocessor_result(call: StageCall, nodes: Any) -> Any:
    selected = _ids(nodes)
    if selected is not None:
        call.span.set_attribute(attr.CONTEXT_SELECTED_IDS, selected)
    return nodes


class LlamaIndexInstrumentor(VersionedInstrumentor):
    """Traces LlamaIndex retrievers and node postprocessors (any integration package)."""

    library: ClassVar[str] = "llama_index.core"
    requirement: ClassVar[str] = "llama-index-core >= 0.11"
    tested: ClassVar[str] = "< 0.15"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        retrieval, selection = "llama_index.retriever", "llama_index.postprocessor"
        return (
            Patch(
                _RETRIEVERS,
                "BaseRetriever.retrieve",
                retrieval,
                _retriever_request,
                record_retrieved,
            ),
            Patch(
                _RETRIEVERS,
                "BaseRetriever.aretrieve",
                retrieval,
                _retriever_request,
                record_retrieved,
                is_async=True,
            ),
            Patch(
                _POSTPROCESSORS,
                "BaseNodePostprocessor.postprocess_nodes",
                selection,
                _postprocessor_request,
                _postprocessor_result,
            ),
            Patch(
                _POSTPROCESSORS,
                "BaseNodePostprocessor.apostprocess_nodes",
                selection,
                _postprocessor_request,
                _postprocessor_result,
                is_async=True,
            ),
        )
