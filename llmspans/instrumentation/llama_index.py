"""LlamaIndex (``llama-index-core``): retrievers and node postprocessors -> stage spans.

Wrapped public methods of the base classes every integration inherits from:

- ``BaseRetriever.retrieve`` / ``aretrieve`` -> ``retrieval {retriever class}`` with
  the node ids and scores of the returned ``NodeWithScore`` list;
- ``BaseNodePostprocessor.postprocess_nodes`` / ``apostprocess_nodes`` (rerankers,
  similarity cut-offs, ...) -> ``context_selection {postprocessor class}`` with the
  candidate ids (``llmspans.context.input_ids``) and the kept ids
  (``llmspans.context.selected_ids``), in order.

A query engine's ``query`` / ``aquery`` (``BaseQueryEngine``), or a chat engine's
``chat`` / ``achat`` (the simple, context, condense-plus-context and
condense-question engines), invoked outside any decorated ``@llmspans.pipeline``
opens a pipeline root ``invoke_workflow {engine class}``, so its retrieval,
selection and model calls form one attributed run.

Document ids are the source documents' (a node's ``ref_doc_id``), so labels and
citations that name documents match; the node (chunk) ids are kept, in the same
order, as ``llmspans.retrieval.chunk_ids``.

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
from llmspans._documents import document_texts, extract_documents
from llmspans.instrumentation._base import (
    Request,
    StageCall,
    as_float,
    as_int,
    as_str,
    field_of,
)
from llmspans.instrumentation._patching import Patch
from llmspans.instrumentation._retrieval import (
    record_documents,
    record_retrieved,
    retrieval_request,
)
from llmspans.instrumentation._roots import RootInfo, root_patches
from llmspans.instrumentation._versions import VersionedInstrumentor

_RETRIEVERS = "llama_index.core.base.base_retriever"
_POSTPROCESSORS = "llama_index.core.postprocessor.types"
_QUERY_ENGINES = "llama_index.core.base.base_query_engine"
#: Chat engines implement ``chat`` / ``achat`` each (the base class only declares them).
_CHAT_ENGINES = (
    ("llama_index.core.chat_engine.simple", "SimpleChatEngine"),
    ("llama_index.core.chat_engine.context", "ContextChatEngine"),
    ("llama_index.core.chat_engine.condense_plus_context", "CondensePlusContextChatEngine"),
    ("llama_index.core.chat_engine.condense_question", "CondenseQuestionChatEngine"),
)


def _query_text(value: Any) -> str | None:
    return as_str(value) or as_str(field_of(value, "query_str"))


def _retriever_request(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request:
    query = args[0] if args else kwargs.get("str_or_query_bundle")
    top_k = as_int(getattr(instance, "similarity_top_k", None))
    return retrieval_request(
        type(instance).__name__, kind=SpanKind.INTERNAL, top_k=top_k, query=_query_text(query)
    )


class _Nodes:
    """The source-document ids, chunk ids and scores of a ``NodeWithScore`` list."""

    __slots__ = ("chunk_ids", "document_ids", "scores")

    def __init__(self, document_ids: list[str], chunk_ids: list[str], scores: list[float]):
        self.document_ids = document_ids
        self.chunk_ids = chunk_ids
        self.scores = scores


def _read_nodes(nodes: Any) -> _Nodes | None:
    """Ids of the source documents (``ref_doc_id``), chunk ids and scores, in order.

    Labels and citations name documents, not the chunks an index split them into,
    so the document id of a node is its ``ref_doc_id``; a node with no source
    document (built directly) is its own document. ``None`` when an item is not a
    node: the generic extraction then applies.
    """
    if not isinstance(nodes, list | tuple):
        return None
    document_ids: list[str] = []
    chunk_ids: list[str] = []
    scores: list[float] = []
    for item in nodes:
        node = getattr(item, "node", item)
        chunk_id = as_str(getattr(node, "node_id", None))
        if chunk_id is None:
            return None
        chunk_ids.append(chunk_id)
        document_ids.append(as_str(getattr(node, "ref_doc_id", None)) or chunk_id)
        score = as_float(getattr(item, "score", None))
        if score is not None:
            scores.append(score)
    return _Nodes(document_ids, chunk_ids, scores)


def _ids(nodes: Any) -> list[str] | None:
    read = _read_nodes(nodes)
    if read is not None:
        return read.document_ids
    found = extract_documents(nodes) if nodes is not None else None
    return found[0] if found is not None else None


def _retriever_result(call: StageCall, nodes: Any) -> Any:
    read = _read_nodes(nodes)
    if read is None:
        return record_retrieved(call, nodes)
    scores = read.scores if len(read.scores) == len(read.document_ids) else None
    record_documents(call, read.document_ids, scores, texts=document_texts(nodes))
    if read.chunk_ids != read.document_ids:
        call.set(attr.RETRIEVAL_CHUNK_IDS, read.chunk_ids)
    return nodes


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


def _query_engine_root(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RootInfo:
    return RootInfo(type(instance).__name__)


class LlamaIndexInstrumentor(VersionedInstrumentor):
    """Traces LlamaIndex retrievers and node postprocessors (any integration package)."""

    library: ClassVar[str] = "llama_index.core"
    requirement: ClassVar[str] = "llama-index-core >= 0.11"
    tested: ClassVar[str] = "< 0.15"

    def patches(self, tracer: Tracer) -> Sequence[Patch]:
        retrieval, selection = "llama_index.retriever", "llama_index.postprocessor"
        return (
            *root_patches(
                _QUERY_ENGINES,
                "BaseQueryEngine",
                {"query": "sync", "aquery": "async"},
                framework="llama_index",
                kind="llama_index.query",
                namer=_query_engine_root,
            ),
            *(
                patch
                for module, engine in _CHAT_ENGINES
                for patch in root_patches(
                    module,
                    engine,
                    {"chat": "sync", "achat": "async"},
                    framework="llama_index",
                    kind="llama_index.chat",
                    namer=_query_engine_root,
                )
            ),
            Patch(
                _RETRIEVERS,
                "BaseRetriever.retrieve",
                retrieval,
                _retriever_request,
                _retriever_result,
            ),
            Patch(
                _RETRIEVERS,
                "BaseRetriever.aretrieve",
                retrieval,
                _retriever_request,
                _retriever_result,
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
