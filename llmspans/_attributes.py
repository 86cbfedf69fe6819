"""Attribute names, stage names and span names: the wire contract (docs/conventions.md).

Every other module imports these constants; no attribute name is spelled twice.
``gen_ai.*`` names are the OpenTelemetry GenAI semantic-convention ones (newest:
``gen_ai.provider.name``); names of our own live under ``llmspans.*``.
"""

from __future__ import annotations

from typing import Final, Literal

# --- stages ---------------------------------------------------------------
STAGE_PIPELINE: Final = "pipeline"
STAGE_RETRIEVAL: Final = "retrieval"
STAGE_CONTEXT_SELECTION: Final = "context_selection"
STAGE_GENERATION: Final = "generation"
STAGE_ACTION: Final = "action"
STAGE_FEEDBACK: Final = "feedback"
STAGE_UNATTRIBUTED: Final = "unattributed"

Stage = Literal["pipeline", "retrieval", "context_selection", "generation", "action", "feedback"]

#: The four working stages in pipeline order: attribution walks them in this order.
PIPELINE_ORDER: Final = (
    STAGE_RETRIEVAL,
    STAGE_CONTEXT_SELECTION,
    STAGE_GENERATION,
    STAGE_ACTION,
)
ALL_STAGES: Final = (STAGE_PIPELINE, *PIPELINE_ORDER, STAGE_FEEDBACK)

# --- gen_ai.operation.name values -----------------------------------------
OP_INVOKE_WORKFLOW: Final = "invoke_workflow"
OP_RETRIEVAL: Final = "retrieval"
OP_CHAT: Final = "chat"
OP_TEXT_COMPLETION: Final = "text_completion"
OP_EMBEDDINGS: Final = "embeddings"
OP_EXECUTE_TOOL: Final = "execute_tool"

# --- OpenTelemetry GenAI semantic conventions ------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_DATA_SOURCE_ID: Final = "gen_ai.data_source.id"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
ERROR_TYPE: Final = "error.type"

# --- llmspans.* -------------------------------------------------------------
STAGE: Final = "llmspans.stage"
PIPELINE: Final = "llmspans.pipeline"

RETRIEVAL_DOCUMENT_IDS: Final = "llmspans.retrieval.document_ids"
RETRIEVAL_SCORES: Final = "llmspans.retrieval.scores"
RETRIEVAL_RELEVANT_IDS: Final = "llmspans.retrieval.relevant_ids"
RETRIEVAL_QUERY: Final = "llmspans.retrieval.query"  # content: only when capture is on
RETRIEVAL_DOCUMENTS_CONTENT: Final = "llmspans.retrieval.documents"  # content

CONTEXT_INPUT_IDS: Final = "llmspans.context.input_ids"
CONTEXT_SELECTED_IDS: Final = "llmspans.context.selected_ids"
CONTEXT_TOKEN_BUDGET: Final = "llmspans.context.token_budget"
CONTEXT_TOKENS: Final = "llmspans.context.tokens"

GENERATION_CITATIONS: Final = "llmspans.generation.citations"
GENERATION_CONFIDENCE: Final = "llmspans.generation.confidence"
GENERATION_REFUSED: Final = "llmspans.generation.refused"
GENERATION_OUTPUT_VALID: Final = "llmspans.generation.output_valid"

COST_USD: Final = "llmspans.cost.usd"

ACTION_VERIFIED: Final = "llmspans.action.verified"
ACTION_VERIFICATION: Final = "llmspans.action.verification"

TASK_COMPLETED: Final = "llmspans.task.completed"
TASK_CORRECT: Final = "llmspans.task.correct"

FEEDBACK_KIND: Final = "llmspans.feedback.kind"
FEEDBACK_EDIT_RATIO: Final = "llmspans.feedback.edit_ratio"
FEEDBACK_KINDS: Final = ("accept", "edit", "bypass", "reject")

# --- segments and sources (docs/conventions.md section 7) ---------------------------
SEGMENT: Final = "llmspans.segment"  # the class of input a run served
RUN_SOURCE: Final = "llmspans.run.source"  # production / offline / shadow
SOURCE_PRODUCTION: Final = "production"
SOURCE_OFFLINE: Final = "offline"
SOURCE_SHADOW: Final = "shadow"
SOURCES: Final = (SOURCE_PRODUCTION, SOURCE_OFFLINE, SOURCE_SHADOW)
#: Segment label of a run that names none.
NO_SEGMENT: Final = "none"

# Set by the collector on the pipeline root span.
OUTCOME: Final = "llmspans.outcome"
FAILURE_STAGE: Final = "llmspans.failure.stage"
FAILURE_REASON: Final = "llmspans.failure.reason"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"
OUTCOME_UNVERIFIED: Final = "unverified"
OUTCOMES: Final = (OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_UNVERIFIED)

# --- failure reasons (SPEC section 5) ---------------------------------------
REASON_ERROR: Final = "error"
REASON_EMPTY: Final = "empty"
REASON_MISSED_RELEVANT: Final = "missed_relevant"
REASON_LOW_RELEVANCE: Final = "low_relevance"
REASON_DROPPED_RELEVANT: Final = "dropped_relevant"
REASON_UNSUPPORTED_CITATION: Final = "unsupported_citation"
REASON_REFUSED: Final = "refused"
REASON_INVALID_OUTPUT: Final = "invalid_output"
REASON_VERIFICATION_FAILED: Final = "verification_failed"
REASON_TASK_INCOMPLETE: Final = "task_incomplete"

# --- span names (SPEC section 2) ------------------------------------------------
def span_name(stage: str, detail: str | None) -> str:
    """The span name of a stage span: ``"{operation} {detail}"``, or the operation alone."""
    prefix = _SPAN_NAME_PREFIX.get(stage, stage)
    return f"{prefix} {detail}" if detail else prefix


_SPAN_NAME_PREFIX: Final[dict[str, str]] = {
    STAGE_PIPELINE: OP_INVOKE_WORKFLOW,
    STAGE_RETRIEVAL: OP_RETRIEVAL,
    STAGE_CONTEXT_SELECTION: "context_selection",
    STAGE_GENERATION: OP_CHAT,
    STAGE_ACTION: OP_EXECUTE_TOOL,
    STAGE_FEEDBACK: "feedback",
}

# --- metric names (OTel dotted names; Prometheus names in comments) ------------
METRIC_STAGE_CALLS: Final = "llmspans.stage.calls"  # llmspans_stage_calls_total
METRIC_STAGE_DURATION: Final = "llmspans.stage.duration"  # llmspans_stage_duration_seconds
METRIC_TASK_OUTCOMES: Final = "llmspans.task.outcomes"  # llmspans_task_outcomes_total
METRIC_TASK_DURATION: Final = "llmspans.task.duration"  # llmspans_task_duration_seconds
METRIC_STAGE_FAILURES: Final = "llmspans.stage.failures"  # llmspans_stage_failures_total
METRIC_CONTEXT_PRECISION: Final = "llmspans.retrieval.context_precision"
METRIC_CONTEXT_RECALL: Final = "llmspans.retrieval.context_recall"
METRIC_CITATION_PRECISION: Final = "llmspans.generation.citation_precision"
METRIC_TASK_COST: Final = "llmspans.task.cost_usd"  # llmspans_task_cost_usd_total
METRIC_FEEDBACK: Final = "llmspans.feedback"  # llmspans_feedback_total
METRIC_CALIBRATION_RUNS: Final = "llmspans.calibration.runs"  # llmspans_calibration_runs_total
METRIC_CALIBRATION_CONFIDENCE: Final = "llmspans.calibration.confidence"
METRIC_CALIBRATION_ECE: Final = "llmspans.calibration.ece"  # gauge

#: Label value that replaces pipeline names beyond the cardinality limit.
OTHER_LABEL: Final = "other"

# --- added for the auto-instrumentors ---------------------------------------------
DB_SYSTEM_NAME: Final = "db.system.name"  # vector store queried by a retrieval span
DB_COLLECTION_NAME: Final = "db.collection.name"
#: Distances of a retrieval, same order as the ids, where the store reports distances
#: that have no similarity equivalent (lower is closer; e.g. chromadb's ``l2`` space).
RETRIEVAL_DISTANCES: Final = "llmspans.retrieval.distances"

# --- other conventions read by the core (llmspans/core/conventions.py) ----------------
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_GENERATE_CONTENT: Final = "generate_content"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_RETRIEVAL_DOCUMENTS: Final = "gen_ai.retrieval.documents"
#: finish reasons that mean the model declined to answer
FINISH_CONTENT_FILTER: Final = "content_filter"
FINISH_REFUSAL: Final = "refusal"
# Arize OpenInference
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_LLM_FINISH_REASON: Final = "llm.finish_reason"
OPENINFERENCE_RETRIEVAL_DOCUMENTS: Final = "retrieval.documents"  # .{i}.document.id / .score
OPENINFERENCE_RERANKER_INPUT: Final = "reranker.input_documents"  # .{i}.document.id / .score
OPENINFERENCE_RERANKER_OUTPUT: Final = "reranker.output_documents"  # .{i}.document.id / .score
# Traceloop OpenLLMetry
TRACELOOP_SPAN_KIND: Final = "traceloop.span.kind"
TRACELOOP_WORKFLOW_NAME: Final = "traceloop.workflow.name"
