"""Facts from the other GenAI span conventions: OpenTelemetry ``gen_ai.*``, Arize
OpenInference and Traceloop OpenLLMetry.

Teams that already trace their LLM calls with one of those instrumentations get
attribution without writing ``llmspans.*`` attributes: the converter of every span
source (:mod:`llmspans.core.convert` and the adapters around it) reads the extra
keys listed here (and nothing else of those conventions) and :func:`apply` turns
them into the fields of a
:class:`~llmspans.core.records.SpanRecord` the rules already read.

**Precedence**, one rule for every field: a value written by llmspans wins over a
``gen_ai.*`` one, which wins over an OpenInference one, which wins over a
Traceloop one. A span that carries ``llmspans.stage`` is llmspans' own and is read
through ``llmspans.*`` only; the conventions fill in spans llmspans did not write.
Reasons are in docs/conventions.md ("Other conventions").

Pure: no I/O, no globals that change. Values of the wrong type are counted as bad
attributes, like llmspans' own; indexed document attributes are bounded
(:data:`MAX_INDEXED_DOCUMENTS` per list), and the cap counts one bad attribute when
it bites.
"""

from __future__ import annotations

import json
import math
from typing import Final

from llmspans import _attributes as A
from llmspans.core.records import SpanRecord, ValueKind

#: ``db.system`` and ``db.operation`` as OpenLLMetry writes them (the names of the
#: database conventions before ``db.system.name`` and ``db.operation.name``)
DB_SYSTEM: Final = "db.system"
DB_OPERATION: Final = "db.operation"

__all__ = [
    "FOREIGN_FIELDS",
    "INDEXED_PREFIXES",
    "MAX_INDEXED_DOCUMENTS",
    "RESULT_EVENT",
    "RESULT_ID",
    "RESULT_SCORE",
    "Collected",
    "apply",
    "indexed_key",
]

#: attribute key -> (slot in :class:`Collected`, expected kind): the scalar keys of
#: the other conventions the core reads. (``gen_ai.operation.name`` is a record field
#: of its own, :attr:`SpanRecord.operation`: llmspans writes it too.)
FOREIGN_FIELDS: Final[dict[str, tuple[str, ValueKind]]] = {
    A.GEN_AI_AGENT_NAME: ("agent_name", ValueKind.STR),
    A.GEN_AI_RESPONSE_FINISH_REASONS: ("finish_reasons", ValueKind.STR_LIST),
    A.GEN_AI_RETRIEVAL_DOCUMENTS: ("retrieval_documents", ValueKind.STR),
    A.OPENINFERENCE_SPAN_KIND: ("openinference_kind", ValueKind.STR),
    A.OPENINFERENCE_LLM_FINISH_REASON: ("openinference_finish_reason", ValueKind.STR),
    A.TRACELOOP_SPAN_KIND: ("traceloop_kind", ValueKind.STR),
    A.TRACELOOP_WORKFLOW_NAME: ("traceloop_workflow", ValueKind.STR),
    # OpenLLMetry's vector-store instrumentations (chromadb, pinecone): the database
    # and the operation of a span; a query's results are events (see RESULT_EVENT)
    DB_SYSTEM: ("db_system", ValueKind.STR),
    DB_OPERATION: ("db_operation", ValueKind.STR),
}

#: The vector stores whose OpenLLMetry query spans are retrievals (``db.system``,
#: compared in lower case): those whose instrumentation writes one result event per
#: document returned, so that no event means an empty result. (Its qdrant
#: instrumentation, for one, records no result: a query there would look empty.)
VECTOR_STORES: Final = frozenset({"chroma", "pinecone"})
#: The event OpenLLMetry adds to a vector-store query span per document it returned,
#: with the document's id (and, for some stores, its score) as event attributes.
RESULT_EVENT: Final = "db.query.result"
RESULT_ID: Final = "db.query.result.id"
RESULT_SCORE: Final = "db.query.result.score"
_QUERY: Final = "query"

#: OpenInference's indexed document lists: ``{prefix}.{i}.document.id`` / ``.score``.
INDEXED_PREFIXES: Final[dict[str, str]] = {
    A.OPENINFERENCE_RETRIEVAL_DOCUMENTS + ".": "retrieved",
    A.OPENINFERENCE_RERANKER_INPUT + ".": "reranker_input",
    A.OPENINFERENCE_RERANKER_OUTPUT + ".": "reranker_output",
}
#: the starts of every indexed key, for a cheap ``str.startswith`` test
INDEXED_STARTS: Final = tuple(INDEXED_PREFIXES)
_DOCUMENT_INFIX: Final = ".document."
#: the part of a document an indexed key holds: its id, its score, anything else
#: (content, metadata: only tells that the document exists, its value is not read)
PART_ID: Final = 0
PART_SCORE: Final = 1
PART_OTHER: Final = 2
_PARTS: Final = {"id": PART_ID, "score": PART_SCORE}

#: Documents read per indexed list (and from ``gen_ai.retrieval.documents``); the
#: rest is ignored and counted as one bad attribute.
MAX_INDEXED_DOCUMENTS: Final = 1024
#: ``gen_ai.retrieval.documents`` longer than this is not parsed (one bad attribute).
MAX_DOCUMENTS_JSON_BYTES: Final = 1 << 20

# --- stage and run roots --------------------------------------------------------------

_ROOT: Final = "root"
_AGENT: Final = "agent"
#: gen_ai.operation.name -> stage (or a run root)
_BY_OPERATION: Final[dict[str, str]] = {
    A.OP_CHAT: A.STAGE_GENERATION,
    A.OP_TEXT_COMPLETION: A.STAGE_GENERATION,
    A.OP_GENERATE_CONTENT: A.STAGE_GENERATION,
    A.OP_EXECUTE_TOOL: A.STAGE_ACTION,
    A.OP_RETRIEVAL: A.STAGE_RETRIEVAL,
    # not a semantic-conventions value: what OpenLLMetry's LangChain and vector-store
    # instrumentations write for a retriever
    "vector_db_retrieve": A.STAGE_RETRIEVAL,
    A.OP_INVOKE_WORKFLOW: _ROOT,
    A.OP_INVOKE_AGENT: _AGENT,
}
#: openinference.span.kind -> stage (or a run root)
_BY_OPENINFERENCE_KIND: Final[dict[str, str]] = {
    "LLM": A.STAGE_GENERATION,
    "RETRIEVER": A.STAGE_RETRIEVAL,
    "RERANKER": A.STAGE_CONTEXT_SELECTION,
    "TOOL": A.STAGE_ACTION,
    "CHAIN": _ROOT,
    "AGENT": _AGENT,
}
#: traceloop.span.kind -> stage (or a run root); ``task`` is a step of no stage
_BY_TRACELOOP_KIND: Final[dict[str, str]] = {
    "tool": A.STAGE_ACTION,
    "workflow": _ROOT,
    "agent": _AGENT,
}
_DOCUMENT_KINDS: Final = frozenset({"RETRIEVER", "RERANKER"})
_REFUSALS: Final = frozenset({A.FINISH_CONTENT_FILTER, A.FINISH_REFUSAL})
_OPERATION_PREFIXES: Final = (A.OP_INVOKE_WORKFLOW + " ", A.OP_INVOKE_AGENT + " ")


def indexed_key(key: str) -> tuple[str, int, int] | None:
    """``(list, index, part)`` of an OpenInference indexed document key
    (``retrieval.documents.3.document.id`` -> ``("retrieved", 3, PART_ID)``), else ``None``."""
    for prefix, group in INDEXED_PREFIXES.items():
        if key.startswith(prefix):
            number, infix, name = key[len(prefix) :].partition(_DOCUMENT_INFIX)
            if not infix or not number.isdigit() or len(number) > 9:
                return None
            return group, int(number), _PARTS.get(name, PART_OTHER)
    return None


class Collected:
    """The foreign values one converter found on one span (bounded)."""

    __slots__ = ("bad", "bad_documents", "documents", "values")

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        #: list -> index -> [id, score]
        self.documents: dict[str, dict[int, list[object]]] = {}
        self.bad = 0
        #: indexed document values of the wrong type (counted where documents are read)
        self.bad_documents = 0

    def wants_documents(self) -> bool:
        """Whether the span is an OpenInference retriever or reranker, the only spans
        whose indexed document attributes are read. Converters that walk attributes
        cheaply twice read those in a second pass, so other spans never test their
        keys against :data:`INDEXED_STARTS`."""
        return self.values.get("openinference_kind") in _DOCUMENT_KINDS

    def wants_results(self, name: str) -> bool:
        """Whether the span is an OpenLLMetry vector-store query (``db.system`` a vector
        store, ``db.operation`` or the last part of the span name ``query``), the only
        spans whose :data:`RESULT_EVENT` events are read."""
        values = self.values
        return "db_system" in values and _is_query(values, name)

    def result(self, document_id: object, score: object) -> bool:
        """One :data:`RESULT_EVENT` of a vector-store query, in event order: its id and
        score attributes as decoded (``None`` when absent). Bounded like the indexed
        documents: past :data:`MAX_INDEXED_DOCUMENTS` the cap is marked (one bad
        attribute) and ``False`` says to read no further event."""
        results = self.documents.setdefault("results", {})
        index = len(results)
        if index >= MAX_INDEXED_DOCUMENTS:
            results[-1] = [None, None]
            return False
        results[index] = [None, None]
        if document_id is not None:
            self.document("results", index, PART_ID, document_id)
        if score is not None:
            self.document("results", index, PART_SCORE, score)
        return True

    def add(self, slot: str, value: object) -> None:
        """A typed value of a :data:`FOREIGN_FIELDS` key."""
        self.values[slot] = value

    def document(self, group: str, index: int, part: int, value: object) -> None:
        """One indexed document attribute, a plain Python scalar as decoded (not read
        for :data:`PART_OTHER`)."""
        if part == PART_ID:
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            elif not isinstance(value, str):
                self.bad_documents += 1
                return
        elif part == PART_SCORE:
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.bad_documents += 1
                return
            value = float(value)
            if math.isnan(value) or math.isinf(value):
                self.bad_documents += 1
                return
        documents = self.documents.setdefault(group, {})
        entry = documents.get(index)
        if entry is None:
            if len(documents) >= MAX_INDEXED_DOCUMENTS:
                documents[-1] = [None, None]  # marks the cap as bitten, counted once
                return
            entry = documents[index] = [None, None]
        if part != PART_OTHER:
            entry[part] = value


def _ranked(documents: dict[int, list[object]] | None) -> tuple[list[str], list[float]] | None:
    """Ids and scores in index order (scores only when every document has one);
    ``None`` when a document has no id (its ids are unknown, not empty)."""
    if not documents:
        return None
    ids: list[str] = []
    scores: list[float] = []
    for index in sorted(documents):
        if index < 0:
            continue
        document_id, score = documents[index]
        if not isinstance(document_id, str):
            return None
        ids.append(document_id)
        if isinstance(score, float):
            scores.append(score)
    return ids, scores if len(scores) == len(ids) else []


def _semconv_documents(text: str) -> tuple[list[str], list[float]] | None:
    """Ids and scores of ``gen_ai.retrieval.documents`` (a JSON array of objects with
    ``id`` and ``score``); ``None`` when it is not that."""
    if len(text) > MAX_DOCUMENTS_JSON_BYTES:
        return None
    try:
        documents = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(documents, list):
        return None
    ids: list[str] = []
    scores: list[float] = []
    for document in documents[:MAX_INDEXED_DOCUMENTS]:
        if not isinstance(document, dict):
            return None
        document_id = document.get("id")
        if isinstance(document_id, int) and not isinstance(document_id, bool):
            document_id = str(document_id)
        if not isinstance(document_id, str):
            return None
        ids.append(document_id)
        score = document.get("score")
        if (
            isinstance(score, int | float)
            and not isinstance(score, bool)
            and math.isfinite(score)
        ):
            scores.append(float(score))
    return ids, scores if len(scores) == len(ids) else []


def _kind(record: SpanRecord, values: dict[str, object]) -> str | None:
    """The stage (or ``root``) the conventions give a span, by precedence."""
    operation = record.operation
    if operation is not None:
        found = _BY_OPERATION.get(operation)
        if found is not None:
            return found
    kind = values.get("openinference_kind")
    if isinstance(kind, str):
        found = _BY_OPENINFERENCE_KIND.get(kind)
        if found is not None:
            return found
    kind = values.get("traceloop_kind")
    if isinstance(kind, str):
        found = _BY_TRACELOOP_KIND.get(kind)
        if found is not None:
            return found
    if "db_system" in values and _is_query(values, record.name):
        return A.STAGE_RETRIEVAL
    return None


def _is_query(values: dict[str, object], name: str) -> bool:
    """Whether a span with these values and this name is an OpenLLMetry vector-store
    query (``db.system`` a vector store, ``db.operation`` or else the last part of
    the span name ``query``: ``chroma.query``, ``pinecone.query``)."""
    system = values.get("db_system")
    if not isinstance(system, str) or system.lower() not in VECTOR_STORES:
        return False
    operation = values.get("db_operation")
    if isinstance(operation, str):
        return operation == _QUERY
    return name.rpartition(".")[2] == _QUERY


def _run_name(record: SpanRecord, values: dict[str, object]) -> str | None:
    """The pipeline name of a foreign run root, by precedence."""
    agent = values.get("agent_name")
    if record.operation == A.OP_INVOKE_AGENT and isinstance(agent, str) and agent:
        return agent
    workflow = values.get("traceloop_workflow")
    if isinstance(workflow, str) and workflow:
        return workflow
    name = record.name
    for prefix in _OPERATION_PREFIXES:
        if name.startswith(prefix) and len(name) > len(prefix):
            return name[len(prefix) :]
    return name or None


def apply(record: SpanRecord, collected: Collected | None) -> None:
    """Fill the fields of ``record`` that the other conventions give and llmspans'
    own attributes left empty (see the module docstring for the precedence).

    Sets ``stage`` (a working stage; ``pipeline`` for a run root without parent), or
    for a run root with a parent ``operation`` (``invoke_workflow`` or
    ``invoke_agent``, what makes :attr:`SpanRecord.opens_run` true: it starts a run
    only where no run encloses it, decided in :func:`llmspans.core.runs.assemble`),
    the pipeline name, retrieved and reranked ids and scores, and ``refused``.
    """
    if collected is not None and collected.bad:
        record.bad_attributes += collected.bad
    if record.stage is not None:
        return
    if (
        collected is not None
        and collected.bad_documents
        and (collected.wants_documents() or collected.wants_results(record.name))
    ):
        record.bad_attributes += collected.bad_documents
    values = collected.values if collected is not None else {}
    kind = _kind(record, values)
    if kind is None:
        return
    if kind in (_ROOT, _AGENT):
        if record.pipeline is None:
            record.pipeline = _run_name(record, values)
        if record.operation not in _BY_OPERATION:
            record.operation = A.OP_INVOKE_AGENT if kind == _AGENT else A.OP_INVOKE_WORKFLOW
        if not record.parent_span_id:
            record.stage = A.STAGE_PIPELINE
        return
    record.stage = kind
    workflow = values.get("traceloop_workflow")
    if record.pipeline is None and isinstance(workflow, str) and workflow:
        record.pipeline = workflow
    if kind == A.STAGE_GENERATION:
        if record.refused is None and _refused(values):
            record.refused = True
    elif kind == A.STAGE_RETRIEVAL:
        if record.document_ids is None:
            _retrieved(record, values, collected)
    elif kind == A.STAGE_CONTEXT_SELECTION and collected is not None:
        documents = collected.documents
        offered = _ranked(documents.get("reranker_input"))
        if offered is not None and record.input_ids is None:
            record.input_ids = tuple(offered[0])
        kept = _ranked(documents.get("reranker_output"))
        if kept is not None and record.selected_ids is None:
            record.selected_ids = tuple(kept[0])
        _count_caps(record, documents)


def _refused(values: dict[str, object]) -> bool:
    reasons = values.get("finish_reasons")
    if isinstance(reasons, tuple):
        return any(reason in _REFUSALS for reason in reasons)
    reason = values.get("openinference_finish_reason")
    return isinstance(reason, str) and reason in _REFUSALS


def _retrieved(record: SpanRecord, values: dict[str, object], collected: Collected | None) -> None:
    found: tuple[list[str], list[float]] | None = None
    text = values.get("retrieval_documents")
    if isinstance(text, str):
        found = _semconv_documents(text)
        if found is None:
            record.bad_attributes += 1
    if found is None and collected is not None and collected.wants_documents():
        documents = collected.documents
        found = _ranked(documents.get("retrieved"))
        _count_caps(record, documents)
        if not documents.get("retrieved") and values.get("openinference_kind") == "RETRIEVER":
            # OpenInference writes no attribute at all for an empty result.
            found = [], []
    elif found is None and values.get("openinference_kind") == "RETRIEVER":
        found = [], []
    if found is None and collected is not None and _is_query(values, record.name):
        # OpenLLMetry adds one event per document returned, none for an empty result.
        documents = collected.documents
        found = _ranked(documents.get("results")) if documents.get("results") else ([], [])
        _count_caps(record, documents)
    if found is None:
        return
    ids, scores = found
    record.document_ids = tuple(ids)
    if scores and record.scores is None:
        record.scores = tuple(scores)


def _count_caps(record: SpanRecord, documents: dict[str, dict[int, list[object]]]) -> None:
    for entries in documents.values():
        if -1 in entries:
            record.bad_attributes += 1
