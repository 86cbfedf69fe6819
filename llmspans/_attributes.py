"""Attribute names, stage names and span names: the wire contract (docs/conventions.md).

Every other module imports these constants; no attribute name is spelled twice.
``gen_ai.*`` names are the OpenTelemetry GenAI semantic-convention ones (newest:
``gen_ai.provider.name``); names of our own live under ``llmspans.*``.
"""

from __future__ import annotations

from typing import Final, Literal

from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as _gen_ai
from opentelemetry.semconv.attributes import db_attributes as _db
from opentelemetry.semconv.attributes import error_attributes as _error
from opentelemetry.semconv.attributes import server_attributes as _server

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
# The names come from opentelemetry-semantic-conventions (the strings are fixed by
# the conventions: tests/instrumentation/test_semconv.py pins them).
GEN_AI_OPERATION_NAME: Final = _gen_ai.GEN_AI_OPERATION_NAME
GEN_AI_PROVIDER_NAME: Final = _gen_ai.GEN_AI_PROVIDER_NAME
GEN_AI_REQUEST_MODEL: Final = _gen_ai.GEN_AI_REQUEST_MODEL
GEN_AI_RESPONSE_MODEL: Final = _gen_ai.GEN_AI_RESPONSE_MODEL
GEN_AI_RESPONSE_ID: Final = _gen_ai.GEN_AI_RESPONSE_ID
GEN_AI_RESPONSE_FINISH_REASONS: Final = _gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
GEN_AI_REQUEST_MAX_TOKENS: Final = _gen_ai.GEN_AI_REQUEST_MAX_TOKENS
GEN_AI_REQUEST_TEMPERATURE: Final = _gen_ai.GEN_AI_REQUEST_TEMPERATURE
GEN_AI_USAGE_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_INPUT_TOKENS
GEN_AI_USAGE_OUTPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = _gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
GEN_AI_DATA_SOURCE_ID: Final = _gen_ai.GEN_AI_DATA_SOURCE_ID
GEN_AI_REQUEST_TOP_K: Final = _gen_ai.GEN_AI_REQUEST_TOP_K
GEN_AI_TOOL_NAME: Final = _gen_ai.GEN_AI_TOOL_NAME
GEN_AI_TOOL_CALL_ID: Final = _gen_ai.GEN_AI_TOOL_CALL_ID
GEN_AI_INPUT_MESSAGES: Final = _gen_ai.GEN_AI_INPUT_MESSAGES
GEN_AI_OUTPUT_MESSAGES: Final = _gen_ai.GEN_AI_OUTPUT_MESSAGES
GEN_AI_TOOL_CALL_ARGUMENTS: Final = _gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS
GEN_AI_TOOL_CALL_RESULT: Final = _gen_ai.GEN_AI_TOOL_CALL_RESULT
ERROR_TYPE: Final = _error.ERROR_TYPE

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

# Set by the collector on the pipeline root span it forwards. The embedded mode
# computes the same verdicts for its metrics, but cannot set them: it sees spans
# only once they have ended.
OUTCOME: Final = "llmspans.outcome"
FAILURE_STAGE: Final = "llmspans.failure.stage"
FAILURE_REASON: Final = "llmspans.failure.reason"

OUTCOME_SUCCESS: Final = "success"
OUTCOME_FAILURE: Final = "failure"
OUTCOME_UNVERIFIED: Final = "unverified"
OUTCOMES: Final = (OUTCOME_SUCCESS, OUTCOME_FAILURE, OUTCOME_UNVERIFIED)

# --- failure reasons (docs/conventions.md section 5) ---------------------------------------
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


# --- span names (docs/conventions.md section 2) ------------------------------------------------
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
DB_SYSTEM_NAME: Final = _db.DB_SYSTEM_NAME  # vector store queried by a retrieval span
DB_COLLECTION_NAME: Final = _db.DB_COLLECTION_NAME
#: Distances of a retrieval, same order as the ids, where the store reports distances
#: that have no similarity equivalent (lower is closer; e.g. chromadb's ``l2`` space).
RETRIEVAL_DISTANCES: Final = "llmspans.retrieval.distances"

# --- GenAI semantic-convention names the instrumentors also emit ---------------------
# Taken from opentelemetry-semantic-conventions where it defines them.
GEN_AI_CONVERSATION_ID: Final = _gen_ai.GEN_AI_CONVERSATION_ID
GEN_AI_REQUEST_TOP_P: Final = _gen_ai.GEN_AI_REQUEST_TOP_P
GEN_AI_REQUEST_SEED: Final = _gen_ai.GEN_AI_REQUEST_SEED
GEN_AI_REQUEST_STOP_SEQUENCES: Final = _gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES
GEN_AI_REQUEST_FREQUENCY_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_FREQUENCY_PENALTY
GEN_AI_REQUEST_PRESENCE_PENALTY: Final = _gen_ai.GEN_AI_REQUEST_PRESENCE_PENALTY
GEN_AI_REQUEST_CHOICE_COUNT: Final = _gen_ai.GEN_AI_REQUEST_CHOICE_COUNT
GEN_AI_REQUEST_ENCODING_FORMATS: Final = _gen_ai.GEN_AI_REQUEST_ENCODING_FORMATS
GEN_AI_OUTPUT_TYPE: Final = _gen_ai.GEN_AI_OUTPUT_TYPE
GEN_AI_REQUEST_STREAM: Final = _gen_ai.GEN_AI_REQUEST_STREAM
#: Seconds from the request to the first chunk of a streamed response.
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = _gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
#: ``[{"id": ..., "score": ...}]`` in rank order, as a JSON string (a structured
#: value, which span attributes carry as JSON); ids and scores only, never text.
GEN_AI_RETRIEVAL_DOCUMENTS: Final = _gen_ai.GEN_AI_RETRIEVAL_DOCUMENTS
GEN_AI_RETRIEVAL_QUERY_TEXT: Final = _gen_ai.GEN_AI_RETRIEVAL_QUERY_TEXT  # content
GEN_AI_WORKFLOW_NAME: Final = _gen_ai.GEN_AI_WORKFLOW_NAME
#: ``[{"type": "text", "content": ...}]``: a system prompt given apart from the messages
#: (Anthropic's ``system``, Gemini's ``system_instruction``, ...), as a JSON string. Content.
GEN_AI_SYSTEM_INSTRUCTIONS: Final = _gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS
#: The provider under its name in the conventions before ``gen_ai.provider.name``: the
#: client metrics carry both, so that dashboards built on either group them.
GEN_AI_SYSTEM: Final = _gen_ai.GEN_AI_SYSTEM
SERVER_ADDRESS: Final = _server.SERVER_ADDRESS
SERVER_PORT: Final = _server.SERVER_PORT

PROVIDER_AWS_BEDROCK: Final = _gen_ai.GenAiProviderNameValues.AWS_BEDROCK.value
PROVIDER_GCP_GEN_AI: Final = _gen_ai.GenAiProviderNameValues.GCP_GEN_AI.value
PROVIDER_GCP_GEMINI: Final = _gen_ai.GenAiProviderNameValues.GCP_GEMINI.value
PROVIDER_GCP_VERTEX_AI: Final = _gen_ai.GenAiProviderNameValues.GCP_VERTEX_AI.value

#: Chunk (node) ids of a retrieval, same order as ``llmspans.retrieval.document_ids``,
#: where the store returns chunks of source documents (LlamaIndex nodes): the
#: document ids are the source documents', the chunk ids the nodes' own.
RETRIEVAL_CHUNK_IDS: Final = "llmspans.retrieval.chunk_ids"
#: The framework whose top-level invocation opened a pipeline root (``langchain``,
#: ``llama_index``) when no decorated ``@pipeline`` enclosed it.
PIPELINE_FRAMEWORK: Final = "llmspans.pipeline.framework"

# --- continuous evaluation (docs/evaluation.md) ----------------------------------------
#: On a pipeline root: this run was sampled for evaluation and records the content a
#: judge needs (see docs/evaluation.md for where each piece lives).
EVALUATION_SAMPLED: Final = "llmspans.evaluation.sampled"
#: On a generation span: a JSON object, cited document id -> the claim it is cited for.
GENERATION_CLAIMS: Final = "llmspans.generation.claims"
#: On a span of a sampled run: its content attributes were recorded only because the
#: run is sampled (content capture is off); the collector strips them before
#: forwarding unless ``evaluation.forward_content`` (docs/evaluation.md).
EVALUATION_SAMPLED_CONTENT: Final = "llmspans.evaluation.sampled_content"
#: On an ``evaluate {pipeline}`` span: the evaluator, its verdict and the judged figures.
EVALUATION_EVALUATOR: Final = "llmspans.evaluation.evaluator"
EVALUATION_VERDICT: Final = "llmspans.evaluation.verdict"
EVALUATION_RELEVANT_IDS: Final = "llmspans.evaluation.relevant_ids"
EVALUATION_SUPPORTED: Final = "llmspans.evaluation.supported_citations"
EVALUATION_UNSUPPORTED: Final = "llmspans.evaluation.unsupported_citations"
EVALUATION_CORRECT: Final = "llmspans.evaluation.correct"
EVALUATION_SCORE: Final = "llmspans.evaluation.score"
EVALUATION_EXPLANATION: Final = "llmspans.evaluation.explanation"
EVALUATION_COST_USD: Final = "llmspans.evaluation.cost_usd"
EVALUATION_FAILURE_STAGE: Final = "llmspans.evaluation.failure_stage"
EVALUATION_FAILURE_REASON: Final = "llmspans.evaluation.failure_reason"
STAGE_EVALUATION: Final = "evaluation"
OP_EVALUATE: Final = "evaluate"
REASON_INCORRECT_ANSWER: Final = "incorrect_answer"
#: the ``basis`` label of judged-or-labelled metrics
BASIS_LABELS: Final = "labels"
BASIS_JUDGE: Final = "judge"
BASIS_OUTCOME: Final = "outcome"
METRIC_CITATION_SUPPORT: Final = "llmspans.generation.citation_support"
METRIC_JUDGED_FAILURES: Final = "llmspans.judged.failures"  # llmspans_judged_failures_total
METRIC_EVALUATIONS: Final = "llmspans.evaluations"  # llmspans_evaluations_total
METRIC_EVALUATION_COST: Final = "llmspans.evaluation.cost_usd"
METRIC_EVALUATION_DROPPED: Final = "llmspans.evaluation.dropped"
METRIC_JUDGE_AGREEMENT: Final = "llmspans.judge.agreement"
# --- other conventions read by the core (llmspans/core/conventions.py) ----------------
OP_INVOKE_AGENT: Final = "invoke_agent"
OP_GENERATE_CONTENT: Final = "generate_content"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
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


#: Every attribute that holds content (recorded only when capture is on, or in a run
#: sampled for evaluation): what the collector strips from a span that carries
#: ``llmspans.evaluation.sampled_content``.
CONTENT_ATTRIBUTES: Final = frozenset(
    (
        RETRIEVAL_QUERY,
        GEN_AI_RETRIEVAL_QUERY_TEXT,
        RETRIEVAL_DOCUMENTS_CONTENT,
        GEN_AI_INPUT_MESSAGES,
        GEN_AI_OUTPUT_MESSAGES,
        GEN_AI_SYSTEM_INSTRUCTIONS,
        GENERATION_CLAIMS,
        GEN_AI_TOOL_CALL_ARGUMENTS,
        GEN_AI_TOOL_CALL_RESULT,
    )
)
