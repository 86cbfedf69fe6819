"""The plain span record every source converts into.

A :class:`SpanRecord` holds only what attribution and the metrics need, already
typed. SDK ``ReadableSpan`` objects (in process), OTLP protobuf spans (the
collector) and OTLP JSON spans (offline files) all convert into it, so the rules
in :mod:`llmspans.core.attribution` see one shape whatever the source.

Spans written with other conventions (OpenTelemetry ``gen_ai.*``, OpenInference,
OpenLLMetry) are read into the same fields by :mod:`llmspans.core.conventions`.

Attribute values of the wrong type are not an error: the converter skips them and
counts them in :attr:`SpanRecord.bad_attributes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final, overload

from llmspans import _attributes as A


class ValueKind(Enum):
    """How a record field is typed on the wire."""

    STR = "str"
    BOOL = "bool"
    FLOAT = "float"  # double, int accepted
    INT = "int"
    STR_LIST = "str[]"
    FLOAT_LIST = "float[]"  # double[], int[] accepted


#: attribute key -> (SpanRecord field, expected kind). The converters read these
#: keys and nothing else: everything else on a span stays opaque to the core.
ATTRIBUTE_FIELDS: Final[dict[str, tuple[str, ValueKind]]] = {
    A.STAGE: ("stage", ValueKind.STR),
    A.PIPELINE: ("pipeline", ValueKind.STR),
    A.RETRIEVAL_DOCUMENT_IDS: ("document_ids", ValueKind.STR_LIST),
    A.RETRIEVAL_SCORES: ("scores", ValueKind.FLOAT_LIST),
    A.RETRIEVAL_RELEVANT_IDS: ("relevant_ids", ValueKind.STR_LIST),
    A.CONTEXT_INPUT_IDS: ("input_ids", ValueKind.STR_LIST),
    A.CONTEXT_SELECTED_IDS: ("selected_ids", ValueKind.STR_LIST),
    A.GENERATION_CITATIONS: ("citations", ValueKind.STR_LIST),
    A.GENERATION_CONFIDENCE: ("confidence", ValueKind.FLOAT),
    A.GENERATION_REFUSED: ("refused", ValueKind.BOOL),
    A.GENERATION_OUTPUT_VALID: ("output_valid", ValueKind.BOOL),
    A.COST_USD: ("cost_usd", ValueKind.FLOAT),
    A.ACTION_VERIFIED: ("verified", ValueKind.BOOL),
    A.ACTION_VERIFICATION: ("verification", ValueKind.STR),
    A.TASK_COMPLETED: ("task_completed", ValueKind.BOOL),
    A.TASK_CORRECT: ("task_correct", ValueKind.BOOL),
    A.FEEDBACK_KIND: ("feedback_kind", ValueKind.STR),
    A.FEEDBACK_EDIT_RATIO: ("edit_ratio", ValueKind.FLOAT),
    A.ERROR_TYPE: ("error_type", ValueKind.STR),
    A.SEGMENT: ("segment", ValueKind.STR),
    A.RUN_SOURCE: ("source", ValueKind.STR),
    # content a judge needs, read for evaluation only (cut to MAX_CONTENT_CHARS)
    A.EVALUATION_SAMPLED: ("evaluation_sampled", ValueKind.BOOL),
    A.RETRIEVAL_QUERY: ("query", ValueKind.STR),
    A.RETRIEVAL_DOCUMENTS_CONTENT: ("documents_content", ValueKind.STR),
    A.GEN_AI_INPUT_MESSAGES: ("input_messages", ValueKind.STR),
    A.GEN_AI_OUTPUT_MESSAGES: ("output_messages", ValueKind.STR),
    A.GENERATION_CLAIMS: ("claims", ValueKind.STR),
    A.GEN_AI_OPERATION_NAME: ("operation", ValueKind.STR),
}

#: Record fields holding content for evaluation: each value is cut to
#: :data:`MAX_CONTENT_CHARS` characters when converted (docs/evaluation.md).
CONTENT_FIELDS: Final = frozenset(
    ("query", "documents_content", "input_messages", "output_messages", "claims")
)
#: The longest content value a record keeps, in characters.
MAX_CONTENT_CHARS: Final = 1 << 20


class _ContentField:
    """A content field of :class:`SpanRecord` (:data:`CONTENT_FIELDS`), kept in its
    ``content`` dict: most spans carry none, and a slot each would cost every span
    of every source its initialisation."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, record: None, owner: type[object]) -> _ContentField: ...
    @overload
    def __get__(self, record: SpanRecord, owner: type[object]) -> str | None: ...
    def __get__(self, record: SpanRecord | None, owner: type[object]) -> str | _ContentField | None:
        if record is None:
            return self
        content = record.content
        return None if content is None else content.get(self.name)

    def __set__(self, record: SpanRecord, value: str | None) -> None:
        content = record.content
        if value is None:
            if content is not None:
                content.pop(self.name, None)
            return
        if content is None:
            content = record.content = {}
        content[self.name] = value


@dataclass(slots=True)
class SpanRecord:
    """One span, reduced to the facts the core uses.

    Ids are raw bytes (16-byte trace id, 8-byte span id) as on the OTLP wire;
    ``parent_span_id`` is ``b""`` for a root span. Times are Unix nanoseconds.
    ``error`` is true when the span status is ERROR.
    """

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes = b""
    name: str = ""
    start_ns: int = 0
    end_ns: int = 0
    error: bool = False
    stage: str | None = None
    pipeline: str | None = None
    document_ids: tuple[str, ...] | None = None
    scores: tuple[float, ...] | None = None
    relevant_ids: tuple[str, ...] | None = None
    input_ids: tuple[str, ...] | None = None
    selected_ids: tuple[str, ...] | None = None
    citations: tuple[str, ...] | None = None
    confidence: float | None = None
    refused: bool | None = None
    output_valid: bool | None = None
    cost_usd: float | None = None
    verified: bool | None = None
    verification: str | None = None
    task_completed: bool | None = None
    task_correct: bool | None = None
    feedback_kind: str | None = None
    edit_ratio: float | None = None
    error_type: str | None = None
    segment: str | None = None
    source: str | None = None
    #: (trace_id, span_id) of each OTel span link (feedback spans link to their run).
    links: tuple[tuple[bytes, bytes], ...] = ()
    #: how many known attributes had a value of the wrong type and were ignored
    bad_attributes: int = 0
    #: evaluation (docs/evaluation.md): the root's sampling flag, and the content a
    #: judge reads by field name (read and written as ``query``, ``claims``, ...):
    #: ``None`` until the span has some, one slot instead of one per content field
    evaluation_sampled: bool | None = None
    content: dict[str, str] | None = None
    #: ``gen_ai.operation.name``: what the span does, in the semantic conventions'
    #: words (also given to spans of other conventions that open a workflow or an
    #: agent, see :mod:`llmspans.core.conventions`)
    operation: str | None = None

    # not annotated: class attributes, not dataclass fields
    query = _ContentField("query")
    documents_content = _ContentField("documents_content")
    input_messages = _ContentField("input_messages")
    output_messages = _ContentField("output_messages")
    claims = _ContentField("claims")

    @property
    def duration_s(self) -> float:
        """Duration in seconds (0 when the end precedes the start)."""
        return max(0, self.end_ns - self.start_ns) / 1e9

    @property
    def is_root(self) -> bool:
        return not self.parent_span_id

    @property
    def opens_run(self) -> bool:
        """A span without llmspans stage that opens a workflow or an agent (a chain,
        a workflow, an ``invoke_agent`` span, ...): it starts a run where no run
        encloses it (:func:`llmspans.core.runs.assemble`). (A field of its own would
        cost every span of every source its initialisation.)"""
        return self.stage is None and self.operation in _RUN_OPERATIONS


_RUN_OPERATIONS: Final = frozenset({A.OP_INVOKE_WORKFLOW, A.OP_INVOKE_AGENT})
